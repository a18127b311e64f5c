//! The device a run trains and evaluates on.

use candle_core::Device;

/// CUDA 0 when built with `cuda` and a GPU is present, else the CPU.
pub fn pick_device() -> Device {
    Device::cuda_if_available(0).unwrap_or(Device::Cpu)
}
