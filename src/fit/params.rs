//! Fitted parameters and their unconstrained representation, so every optimiser works in Rⁿ.
//!
//! Each parameter `x` (physical units) has bounds `[lo, hi]` and a transform to `θ ∈ R`:
//! - `Identity`: `x = θ` (bounds only reported/enforced by derivative-free methods);
//! - `Log`: `x = exp(θ)` (`lo > 0`), i.e. multiplicative steps;
//! - `Logit`: `x = lo + (hi − lo)·σ(θ)` (bounded on both sides).
//!
//! `dx/dθ` is exposed so a gradient in physical units maps to the unconstrained one:
//! `∂L/∂θ = ∂L/∂x · dx/dθ`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a parameter is mapped to an unconstrained coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// `x = θ`.
    Identity,
    /// `x = exp(θ)`; requires `lo > 0`.
    Log,
    /// `x = lo + (hi − lo)·σ(θ)`.
    #[default]
    Logit,
}

/// One fitted parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Name (with its unit suffix, e.g. `dc_hz`).
    pub name: String,
    /// Lower bound (physical units).
    pub lower: f64,
    /// Upper bound (physical units).
    pub upper: f64,
    /// Initial value (physical units).
    pub init: f64,
    /// Reparametrisation.
    #[serde(default)]
    pub transform: Transform,
}

impl ParamSpec {
    /// A bounded parameter with the default (logit) transform.
    pub fn new(name: &str, lower: f64, upper: f64, init: f64) -> Self {
        Self {
            name: name.into(),
            lower,
            upper,
            init,
            transform: Transform::Logit,
        }
    }
    /// Sets the transform.
    pub fn with_transform(mut self, t: Transform) -> Self {
        self.transform = t;
        self
    }

    /// Checks bounds, init and transform; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let f = |s: &str| format!("{}.{s}", self.name);
        // The width must be finite too: random search and particle swarm draw uniformly from
        // [lower, upper] (rand panics on an infinite range, e.g. [-1e308, 1e308]).
        if !(self.upper - self.lower).is_finite() || self.lower >= self.upper {
            return Err(Error::invalid(
                f("lower/upper"),
                format!("[{}, {}]", self.lower, self.upper),
                "finite with lower < upper and a finite width upper - lower",
            ));
        }
        if !(self.init >= self.lower && self.init <= self.upper) {
            return Err(Error::invalid(
                f("init"),
                self.init,
                format!("[{}, {}]", self.lower, self.upper),
            ));
        }
        if self.transform == Transform::Log && self.lower <= 0.0 {
            return Err(Error::invalid(
                f("lower"),
                self.lower,
                "> 0 for a log transform",
            ));
        }
        Ok(())
    }

    /// θ → x.
    pub fn to_physical(&self, theta: f64) -> f64 {
        match self.transform {
            Transform::Identity => theta,
            Transform::Log => theta.exp(),
            Transform::Logit => self.lower + (self.upper - self.lower) / (1.0 + (-theta).exp()),
        }
    }

    /// dx/dθ at θ.
    pub fn dphys_dtheta(&self, theta: f64) -> f64 {
        match self.transform {
            Transform::Identity => 1.0,
            Transform::Log => theta.exp(),
            Transform::Logit => {
                let s = 1.0 / (1.0 + (-theta).exp());
                (self.upper - self.lower) * s * (1.0 - s)
            }
        }
    }

    /// x → θ (x is clamped strictly inside the bounds for the logit transform).
    pub fn to_unconstrained(&self, x: f64) -> f64 {
        match self.transform {
            Transform::Identity => x,
            Transform::Log => x.max(f64::MIN_POSITIVE).ln(),
            Transform::Logit => {
                let span = self.upper - self.lower;
                let u = ((x - self.lower) / span).clamp(1e-9, 1.0 - 1e-9);
                (u / (1.0 - u)).ln()
            }
        }
    }
}

/// An ordered set of fitted parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSet {
    /// The parameters, in optimiser order.
    pub params: Vec<ParamSpec>,
}

impl ParamSet {
    /// The first `names.len()` coordinates of a box problem: `names[i]` in
    /// `[lower[i], upper[i]]` starting at `start[i]` (default transforms).
    pub fn in_box(names: &[&str], lower: &[f64], upper: &[f64], start: &[f64]) -> Result<Self> {
        Self::new(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| ParamSpec::new(n, lower[i], upper[i], start[i]))
                .collect(),
        )
    }

    /// Validates every parameter (and that the set is non-empty and names are unique).
    pub fn new(params: Vec<ParamSpec>) -> Result<Self> {
        if params.is_empty() {
            return Err(Error::config(
                "params",
                "at least one parameter must be fitted",
            ));
        }
        for (i, p) in params.iter().enumerate() {
            p.validate()?;
            if params[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::config(
                    "params",
                    format!("parameter `{}` appears twice", p.name),
                ));
            }
        }
        Ok(Self { params })
    }
    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }
    /// Whether empty (never, after `new`).
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
    /// Names.
    pub fn names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name.clone()).collect()
    }
    /// Initial physical values.
    pub fn init(&self) -> Vec<f64> {
        self.params.iter().map(|p| p.init).collect()
    }
    /// Lower bounds.
    pub fn lower(&self) -> Vec<f64> {
        self.params.iter().map(|p| p.lower).collect()
    }
    /// Upper bounds.
    pub fn upper(&self) -> Vec<f64> {
        self.params.iter().map(|p| p.upper).collect()
    }
    /// θ → x.
    pub fn to_physical(&self, theta: &[f64]) -> Vec<f64> {
        self.params
            .iter()
            .zip(theta)
            .map(|(p, t)| p.to_physical(*t))
            .collect()
    }
    /// x → θ.
    pub fn to_unconstrained(&self, x: &[f64]) -> Vec<f64> {
        self.params
            .iter()
            .zip(x)
            .map(|(p, v)| p.to_unconstrained(*v))
            .collect()
    }
    /// Chain rule: `∂L/∂θ_i = ∂L/∂x_i · dx_i/dθ_i`.
    pub fn grad_to_unconstrained(&self, theta: &[f64], grad_x: &[f64]) -> Vec<f64> {
        self.params
            .iter()
            .zip(theta)
            .zip(grad_x)
            .map(|((p, t), g)| g * p.dphys_dtheta(*t))
            .collect()
    }
    /// Checks a physical point against the bounds (errors name the parameter).
    pub fn check_in_bounds(&self, x: &[f64]) -> Result<()> {
        if x.len() != self.len() {
            return Err(Error::shape("params", self.len(), x.len()));
        }
        for (p, v) in self.params.iter().zip(x) {
            if !(v.is_finite() && *v >= p.lower && *v <= p.upper) {
                return Err(Error::invalid(
                    &p.name,
                    v,
                    format!("[{}, {}]", p.lower, p.upper),
                ));
            }
        }
        Ok(())
    }
}
