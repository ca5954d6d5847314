//! `train`: SimCLR or a convolutional autoencoder on the `small-cnn` or `resnet18` encoder,
//! trained with candle from a views stream.
//!
//! The binary `latent-train` only parses arguments; everything else is here so tests and
//! `latent-export` (which reuses the model code) can call it:
//!
//! * [`views`]: reading and checking the Arrow views stream written by `latent-augment`;
//! * [`model`]: the encoder and projection head with seeded PyTorch-style init and
//!   PyTorch `state_dict` tensor names;
//! * [`resnet`]: the CIFAR-style ResNet-18 encoder with torchvision's tensor names;
//! * [`autoencoder`]: the mirrored decoder, the autoencoder and its MSE loss;
//! * [`loss`]: NT-Xent and the positive top-1 accuracy;
//! * [`optim`]: AdamW, SGD with momentum, LARS, the learning-rate schedule and its scaling;
//! * [`checkpoint`]: saving and resuming a run;
//! * [`representation`]: which model output `latent-export` writes (encoder, a head
//!   layer, the autoencoder's bottleneck);
//! * [`run`]: the training loop and the run's output files;
//! * [`decode`]: an autoencoder's decoder applied to embeddings, for pictures of the
//!   latent space.

pub mod autoencoder;
pub mod checkpoint;
pub mod decode;
pub mod error;
pub mod loss;
pub mod model;
pub mod optim;
pub mod representation;
pub mod resnet;
pub mod run;
pub mod views;

pub use decode::{AutoencoderDecoder, DecodedImages, decode};
pub use error::{Result, TrainError};
pub use run::{TrainOptions, TrainSummary, TrainedModel, load_model_dir, train, train_stream};
