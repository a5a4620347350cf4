//! Where tensors live and in which precision: the [`Ctx`] every stage creates its tensors through.
//!
//! burn 0.22 dispatches the backend at run time through its `Device`; autodiff is a decorator on
//! the device. The float precision is carried explicitly (f32 for simulation, f64 for gradient
//! checks) so that one process can mix both without touching burn's global per-device settings.

use burn::tensor::{DType, Device, FloatDType, Tensor, TensorCreationOptions, TensorData};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The CPU/GPU backends myodiff can run on (one code path; burn picks the kernels at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's pure-Rust `flex` CPU backend (default: ≈30 % lower per-op cost than ndarray here).
    Flex,
    /// burn's `ndarray` CPU backend.
    Ndarray,
    /// burn's `wgpu` GPU backend (needs the `wgpu` cargo feature).
    Wgpu,
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "ndarray" => Ok(BackendKind::Ndarray),
            "wgpu" | "gpu" => Ok(BackendKind::Wgpu),
            _ => Err(Error::invalid("backend", s, "one of flex, ndarray, wgpu")),
        }
    }
}

/// Floating-point precision of a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (default for simulation).
    F32,
    /// 64-bit floats (gradient checks).
    F64,
}

/// Device + precision. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The burn device (possibly autodiff-decorated).
    pub device: Device,
    /// Float precision of every tensor created through this context.
    pub precision: Precision,
}

impl Default for Ctx {
    fn default() -> Self {
        Self::cpu()
    }
}

impl Ctx {
    /// Default CPU context: flex backend, f32, no autodiff.
    pub fn cpu() -> Self {
        Self::new(BackendKind::Flex).expect("flex backend is always compiled in")
    }

    /// Context on the given backend (f32, no autodiff).
    pub fn new(kind: BackendKind) -> Result<Self> {
        let device = match kind {
            BackendKind::Flex => Device::flex(),
            #[allow(deprecated)]
            BackendKind::Ndarray => Device::ndarray(),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => Device::wgpu(Default::default()),
            #[cfg(not(feature = "wgpu"))]
            BackendKind::Wgpu => {
                return Err(Error::config(
                    "backend",
                    "wgpu was not compiled in; rebuild with `--features wgpu`",
                ));
            }
        };
        Ok(Self {
            device,
            precision: Precision::F32,
        })
    }

    /// Same device, 64-bit floats.
    pub fn f64(mut self) -> Self {
        self.precision = Precision::F64;
        self
    }

    /// Same device, the given precision.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Same device with burn's autodiff decorator (gradients available through `backward`).
    pub fn autodiff(mut self) -> Self {
        if !self.device.is_autodiff() {
            self.device = self.device.autodiff();
        }
        self
    }

    /// Same device without autodiff.
    pub fn inner(mut self) -> Self {
        if self.device.is_autodiff() {
            self.device = self.device.without_autodiff();
        }
        self
    }

    /// Whether tensors created here record an autodiff tape.
    pub fn is_autodiff(&self) -> bool {
        self.device.is_autodiff()
    }

    /// burn's float dtype for this precision.
    pub fn dtype(&self) -> DType {
        match self.precision {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }

    /// burn's float dtype (as `FloatDType`).
    pub fn float_dtype(&self) -> FloatDType {
        match self.precision {
            Precision::F32 => FloatDType::F32,
            Precision::F64 => FloatDType::F64,
        }
    }

    /// Tensor creation options (device + dtype).
    pub fn opts(&self) -> TensorCreationOptions {
        TensorCreationOptions::new(self.device.clone()).with_dtype(self.dtype())
    }

    /// A tensor of zeros.
    pub fn zeros<const D: usize>(&self, shape: [usize; D]) -> Tensor<D> {
        Tensor::zeros(shape, self.opts())
    }

    /// A tensor filled with `value`.
    pub fn full<const D: usize>(&self, shape: [usize; D], value: f64) -> Tensor<D> {
        Tensor::full(shape, value, self.opts())
    }

    /// A tensor from row-major `f64` values (converted to this context's precision).
    pub fn tensor<const D: usize>(&self, values: Vec<f64>, shape: [usize; D]) -> Tensor<D> {
        let data = match self.precision {
            Precision::F64 => TensorData::new(values, shape),
            Precision::F32 => TensorData::new(
                values.into_iter().map(|v| v as f32).collect::<Vec<_>>(),
                shape,
            ),
        };
        Tensor::from_data(data, self.opts())
    }

    /// A tensor from row-major `f32` values.
    pub fn tensor_f32<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        let data = match self.precision {
            Precision::F32 => TensorData::new(values, shape),
            Precision::F64 => TensorData::new(
                values.into_iter().map(|v| v as f64).collect::<Vec<_>>(),
                shape,
            ),
        };
        Tensor::from_data(data, self.opts())
    }

    /// A scalar as a rank-1 tensor of one element (e.g. a parameter to differentiate).
    pub fn scalar(&self, value: f64) -> Tensor<1> {
        self.tensor(vec![value], [1])
    }
}

/// Reads a tensor back to the host as `f64` (row-major).
pub fn to_vec_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    let data = t.into_data();
    match data.dtype() {
        DType::F64 => data.try_to_vec::<f64>().expect("f64 data"),
        _ => data
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("convertible to f64"),
    }
}

/// Reads a tensor back to the host as `f32` (row-major).
pub fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    let data = t.into_data();
    match data.dtype() {
        DType::F32 => data.try_to_vec::<f32>().expect("f32 data"),
        _ => data
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("convertible to f32"),
    }
}

/// Reads a one-element tensor as `f64`.
pub fn scalar_f64<const D: usize>(t: Tensor<D>) -> f64 {
    to_vec_f64(t)[0]
}

/// Whether the fused custom ops (host loops with hand-written adjoints) run on `device`: the CPU
/// backends `flex` and `ndarray`, with or without autodiff. Elsewhere (e.g. wgpu) stages fall back
/// to their tape path.
pub fn host_ops_supported(device: &burn::tensor::Device) -> bool {
    #[allow(deprecated)]
    let ok = matches!(
        device.clone().without_autodiff().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_) | burn::backend::DispatchDevice::NdArray(_)
    );
    ok
}
