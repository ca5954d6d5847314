//! Per-layer timings of small-cnn's convolutions and batch norms: candle's stock ops next
//! to this crate's kernels, in the same process, alternating rep by rep so both see the
//! same machine load.
//!
//! Run with `cargo run --release -p latent-kernels --example layers`.

use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use clap::Parser;
use latent_kernels::ReusingAllocator;

/// The allocator latent-train uses, so the timings include the same (lack of) page faults;
/// `--no-reuse` turns its reuse off.
#[global_allocator]
static ALLOCATOR: ReusingAllocator = ReusingAllocator::new(2 << 30);

/// `--peak-gflops`, for the "% of peak" column.
static PEAK_GFLOPS: OnceLock<f64> = OnceLock::new();

#[derive(Parser)]
#[command(
    about = "Times small-cnn's conv and batch-norm layers: candle's stock ops vs latent-kernels.",
    long_about = "Times, for the four small-cnn conv layers and their batch norms on random \
                  data, forward / backward-input / backward-weight (conv) and forward / \
                  backward (batch norm + ReLU), candle's stock ops next to latent-kernels'. \
                  Reads nothing; prints a Markdown table on stdout: median wall ms, with the \
                  CPU ms of all threads in brackets, and GFLOP/s from wall time (and per \
                  CPU-second in brackets). Also times k4 s2 p1 transposed convolutions of an \
                  assumed decoder.",
    after_help = "Example:\n  cargo run --release -p latent-kernels --example layers -- --reps 5\n  \
                  RAYON_NUM_THREADS=1 cargo run --release -p latent-kernels --example layers"
)]
struct Args {
    /// Timed repetitions per measurement (the median is shown), after one warm-up.
    #[arg(long, default_value_t = 3)]
    reps: usize,

    /// Views per batch (small-cnn trains on 256 images = 512 views).
    #[arg(long, default_value_t = 512)]
    batch: usize,

    /// Skip candle's stock ops (they take most of the run time).
    #[arg(long)]
    ours_only: bool,

    /// The fp32 peak the "% of peak" column divides by. The default is the figure the issue
    /// gives for this machine's 2 cores (2 cores * 2 x 256-bit FMA pipes * 8 lanes * 2
    /// FLOPs * ~3 GHz); with gemm's AVX-512 kernels one core was measured above half of it,
    /// so the true peak is likely higher.
    #[arg(long, default_value_t = 190.0)]
    peak_gflops: f64,

    /// Return freed buffers to the system instead of reusing them (as before the reusing
    /// allocator): every large output then costs fresh pages.
    #[arg(long)]
    no_reuse: bool,

    /// Time only the layers whose name contains this text (e.g. "conv1", "bn", "convT").
    #[arg(long)]
    only: Option<String>,
}

/// One conv layer of small-cnn: 3x3 kernel, padding 1.
struct ConvLayer {
    name: &'static str,
    in_channels: usize,
    out_channels: usize,
    side: usize,
    stride: usize,
}

const CONV_LAYERS: [ConvLayer; 4] = [
    ConvLayer {
        name: "conv0 3->32 s1 @32",
        in_channels: 3,
        out_channels: 32,
        side: 32,
        stride: 1,
    },
    ConvLayer {
        name: "conv1 32->64 s2 @32",
        in_channels: 32,
        out_channels: 64,
        side: 32,
        stride: 2,
    },
    ConvLayer {
        name: "conv2 64->128 s2 @16",
        in_channels: 64,
        out_channels: 128,
        side: 16,
        stride: 2,
    },
    ConvLayer {
        name: "conv3 128->256 s2 @8",
        in_channels: 128,
        out_channels: 256,
        side: 8,
        stride: 2,
    },
];

/// Batch-norm inputs after each conv: (channels, side).
const NORM_LAYERS: [(usize, usize); 4] = [(32, 32), (64, 16), (128, 8), (256, 4)];

/// Upsampling layers of a decoder mirroring small-cnn (in channels, out channels, input
/// side); assumed shapes, for the transposed convolution's timings.
const DECODER_LAYERS: [(usize, usize, usize); 3] = [(256, 128, 4), (128, 64, 8), (64, 32, 16)];

const PADDING: usize = 1;
const EPS: f64 = 1e-5;

fn main() -> candle_core::Result<()> {
    let args = Args::parse();
    let peak = *PEAK_GFLOPS.get_or_init(|| args.peak_gflops);
    if args.no_reuse {
        ALLOCATOR.set_limit_bytes(0);
    }
    println!(
        "| layer | pass | candle ms (cpu ms) | ours ms (cpu ms) | candle GFLOP/s (per CPU-s) | ours GFLOP/s (per CPU-s) | ours % of {peak:.0} GFLOP/s | speed-up |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");

    let wanted = |name: &str| {
        args.only
            .as_ref()
            .is_none_or(|only| name.contains(only.as_str()))
    };
    for layer in CONV_LAYERS.iter().filter(|layer| wanted(layer.name)) {
        time_conv(layer, &args)?;
    }
    for (channels, side) in NORM_LAYERS {
        if wanted(&norm_name(channels, side)) {
            time_batch_norm(channels, side, &args)?;
        }
    }
    for (in_channels, out_channels, side) in DECODER_LAYERS {
        if wanted(&transpose_name(in_channels, out_channels, side)) {
            time_conv_transpose(in_channels, out_channels, side, &args)?;
        }
    }
    Ok(())
}

fn time_conv_transpose(
    in_channels: usize,
    out_channels: usize,
    side: usize,
    args: &Args,
) -> candle_core::Result<()> {
    let device = Device::Cpu;
    let x_dims = [args.batch, in_channels, side, side];
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, x_dims.as_slice(), &device)?)?;
    let w_dims = [in_channels, out_channels, 4, 4];
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, w_dims.as_slice(), &device)?)?;
    // The same multiply-adds as the convolution it is the input gradient of.
    let conv_input = [args.batch, out_channels, 2 * side, 2 * side];
    let conv_weight = [in_channels, out_channels, 4, 4];
    let flops = 2.0 * latent_kernels::conv2d_multiply_adds(&conv_input, &conv_weight, 2, 1)? as f64;
    let name = transpose_name(in_channels, out_channels, side);

    let stock_forward = || x.conv_transpose2d(&w, 1, 0, 2, 1);
    let our_forward = || latent_kernels::conv_transpose2d(&x, &w, 2, 1);
    report(
        &name,
        "forward",
        measure(args, stock_forward, our_forward)?,
        Some(flops),
    );

    // Backward from y with a ones gradient: dx and dw, twice the forward's work.
    let (stock_y, our_y) = (stock_forward()?, our_forward()?);
    let backward = measure(args, || stock_y.backward(), || our_y.backward())?;
    report(&name, "bwd input+weight", backward, Some(2.0 * flops));
    Ok(())
}

fn norm_name(channels: usize, side: usize) -> String {
    format!("bn+relu {channels}@{side}")
}

fn transpose_name(in_channels: usize, out_channels: usize, side: usize) -> String {
    format!("convT {in_channels}->{out_channels} k4s2p1 @{side}")
}

fn time_conv(layer: &ConvLayer, args: &Args) -> candle_core::Result<()> {
    let device = Device::Cpu;
    let x_dims = [args.batch, layer.in_channels, layer.side, layer.side];
    let w_dims = [layer.out_channels, layer.in_channels, 3, 3];
    let x = Tensor::randn(0f32, 1.0, x_dims.as_slice(), &device)?;
    let w = Tensor::randn(0f32, 0.1, w_dims.as_slice(), &device)?;
    let out_side = (layer.side + 2 * PADDING - 3) / layer.stride + 1;
    let dy_dims = [args.batch, layer.out_channels, out_side, out_side];
    let dy = Tensor::randn(0f32, 1.0, dy_dims.as_slice(), &device)?;
    let flops =
        2.0 * latent_kernels::conv2d_multiply_adds(&x_dims, &w_dims, layer.stride, PADDING)? as f64;
    let stride = layer.stride;

    let forward = measure(
        args,
        || x.conv2d(&w, PADDING, stride, 1, 1),
        || latent_kernels::conv2d(&x, &w, stride, PADDING),
    )?;
    report(layer.name, "forward", forward, Some(flops));

    // candle's backprop computes the input gradient as this transposed convolution.
    let out_size = (out_side - 1) * stride + 3 - 2 * PADDING;
    let output_padding = layer.side - out_size;
    let backward_input = measure(
        args,
        || dy.conv_transpose2d(&w, PADDING, output_padding, stride, 1),
        || latent_kernels::conv2d_backward_input(&dy, &w, &x_dims, stride, PADDING),
    )?;
    let pass = if layer.in_channels == 3 {
        "bwd input (unused)"
    } else {
        "bwd input"
    };
    report(layer.name, pass, backward_input, Some(flops));

    // ... and the weight gradient as a convolution of the transposed input by the
    // transposed output gradient (dilation = stride), narrowed to the kernel size.
    let backward_weight = measure(
        args,
        || {
            let dw = x
                .transpose(0, 1)?
                .conv2d(&dy.transpose(0, 1)?, PADDING, 1, stride, 1)?;
            dw.transpose(0, 1)?.narrow(2, 0, 3)?.narrow(3, 0, 3)
        },
        || latent_kernels::conv2d_backward_weight(&x, &dy, 3, stride, PADDING),
    )?;
    report(layer.name, "bwd weight", backward_weight, Some(flops));
    Ok(())
}

fn time_batch_norm(channels: usize, side: usize, args: &Args) -> candle_core::Result<()> {
    let device = Device::Cpu;
    let dims = [args.batch, channels, side, side];
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, dims.as_slice(), &device)?)?;
    let gamma = Var::ones(channels, DType::F32, &device)?;
    let beta = Var::zeros(channels, DType::F32, &device)?;
    let stock = candle_nn::BatchNorm::new(
        channels,
        Tensor::zeros(channels, DType::F32, &device)?,
        Tensor::ones(channels, DType::F32, &device)?,
        gamma.as_tensor().clone(),
        beta.as_tensor().clone(),
        EPS,
    )?;
    let name = norm_name(channels, side);

    let stock_forward = || stock.forward_train(&x)?.relu();
    let our_forward = || Ok(latent_kernels::batch_norm_train(&x, &gamma, &beta, EPS, true)?.0);
    let forward = measure(args, stock_forward, our_forward)?;
    report(&name, "forward", forward, None);

    // Backward from y with a ones gradient: dx, dgamma and dbeta.
    let (stock_y, our_y) = (stock_forward()?, our_forward()?);
    let backward = measure(args, || stock_y.backward(), || our_y.backward())?;
    report(&name, "backward", backward, None);
    Ok(())
}

/// Wall and CPU milliseconds of one call.
#[derive(Clone, Copy)]
struct Timing {
    wall_ms: f64,
    cpu_ms: f64,
}

/// Median timings of (candle's op, ours), one warm-up each, alternating per rep.
fn measure<A, B>(
    args: &Args,
    mut stock: impl FnMut() -> candle_core::Result<A>,
    mut ours: impl FnMut() -> candle_core::Result<B>,
) -> candle_core::Result<(Option<Timing>, Timing)> {
    let time = |f: &mut dyn FnMut() -> candle_core::Result<()>| -> candle_core::Result<Timing> {
        let (start, cpu_start) = (Instant::now(), process_cpu_ns());
        f()?;
        let cpu_ms = (process_cpu_ns() - cpu_start) as f64 / 1e6;
        Ok(Timing {
            wall_ms: start.elapsed().as_secs_f64() * 1e3,
            cpu_ms,
        })
    };
    let (mut stock_times, mut our_times) = (Vec::new(), Vec::new());
    for rep in 0..=args.reps {
        if !args.ours_only {
            let timing = time(&mut || stock().map(drop))?;
            if rep > 0 {
                stock_times.push(timing);
            }
        }
        let timing = time(&mut || ours().map(drop))?;
        if rep > 0 {
            our_times.push(timing);
        }
    }
    Ok((
        (!args.ours_only).then(|| median(&stock_times)),
        median(&our_times),
    ))
}

/// CPU time of all this process's threads so far, in ns (Linux; 0 elsewhere). Unlike wall
/// time it barely changes when other processes compete for the cores.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The per-field medians of `timings`.
fn median(timings: &[Timing]) -> Timing {
    let middle = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Timing {
        wall_ms: middle(timings.iter().map(|t| t.wall_ms).collect()),
        cpu_ms: middle(timings.iter().map(|t| t.cpu_ms).collect()),
    }
}

fn report(layer: &str, pass: &str, (stock, ours): (Option<Timing>, Timing), flops: Option<f64>) {
    let gflops = |t: Timing| {
        let per_second = |ms: f64| flops.map(|f| f / ms / 1e6);
        match (per_second(t.wall_ms), per_second(t.cpu_ms)) {
            (Some(wall), Some(cpu)) => format!("{wall:.1} ({cpu:.1})"),
            _ => "-".to_string(),
        }
    };
    let ms = |t: Timing| format!("{:.1} ({:.0})", t.wall_ms, t.cpu_ms);
    let dash = || "-".to_string();
    let speed_up = stock.map_or_else(dash, |s| format!("{:.1}x", s.wall_ms / ours.wall_ms));
    let of_peak = flops.map_or_else(dash, |f| {
        let peak = PEAK_GFLOPS.get().copied().unwrap_or(190.0);
        format!("{:.0}%", 100.0 * f / ours.wall_ms / 1e6 / peak)
    });
    println!(
        "| {layer} | {pass} | {} | {} | {} | {} | {of_peak} | {speed_up} |",
        stock.map_or_else(dash, ms),
        ms(ours),
        stock.map_or_else(dash, gflops),
        gflops(ours)
    );
}
