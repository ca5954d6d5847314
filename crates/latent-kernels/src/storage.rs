//! Access to the f32 data behind candle tensors and CPU storages, for the kernels.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};

use crate::KernelError;

/// True when the fast CPU kernels can run on all of `tensors`: f32 on the CPU.
pub(crate) fn all_cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The f32 elements a contiguous layout covers in a CPU storage (as `cpu_fwd` receives them).
pub(crate) fn layout_f32<'a>(
    op: &'static str,
    what: &'static str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        return Err(KernelError::UnsupportedStorage {
            op,
            what,
            found: format!("{:?}", storage.dtype()),
        }
        .into());
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(KernelError::BadParameter {
            op,
            message: format!("{what} must be contiguous (the public functions make it so)"),
        }
        .into());
    };
    Ok(&data[start..end])
}

/// Runs `f` on the f32 elements of `tensor`, copied into a contiguous tensor first if needed.
pub(crate) fn with_f32<R>(
    op: &'static str,
    what: &'static str,
    tensor: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(KernelError::UnsupportedStorage {
            op,
            what,
            found: format!("{:?}", tensor.device().location()),
        }
        .into());
    };
    let data = layout_f32(op, what, cpu, layout)?;
    f(data)
}
