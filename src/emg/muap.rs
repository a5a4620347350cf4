//! Motor-unit action potential (MUAP) templates on a surface electrode grid: a fast analytic
//! model (MODEL.md §4.1 simplified).
//!
//! # Model
//! Each motor unit is represented by one **equivalent fibre** at the centre of its territory
//! (depth `h` below the muscle surface, transverse position `x_u`), parallel to the skin along `z`,
//! with its neuromuscular junction (NMJ) at `z_i` and semi-lengths `L1` (towards −z) and `L2`
//! (towards +z). A spike at time 0 starts two intracellular action potentials (IAPs) at the NMJ
//! that travel at the conduction velocity `v` towards both tendons and are extinguished at the
//! fibre ends. The transmembrane potential is Rosenfalck's IAP,
//!
//! ```text
//! V_m(z, t) = V(v·t − |z − z_i|),   V(ζ) = A·ζ³·e^{−λζ}  (ζ ≥ 0, 0 ahead of the front)
//! ```
//!
//! with `A = 96 mV/mm³ = 9.6·10⁷ V/m³`, `λ = 1 mm⁻¹` (MODEL.md §4.1; the resting offset does not
//! matter). The core-conductor source density is `i_m = σ_i π a² ∂²V_m/∂z²` (A/m) restricted to
//! the fibre `[z_i − L1, z_i + L2]`, i.e. the derivative of the truncated axial current — so the
//! model contains the propagating tripole and the generation (NMJ) and extinction (fibre-end)
//! components, and its total current is zero. The medium is homogeneous and anisotropic
//! (`σ_r` across, `σ_z` along the fibres) and **semi-infinite**: the skin is an insulating plane,
//! so the image source doubles the potential on the surface. A point current `I` at radial
//! distance `ρ` and axial distance `w` gives `φ = I / (4π σ_r √((σ_z/σ_r)·ρ² + w²))`. Integrating
//! by parts over the fibre, a single fibre contributes
//!
//! ```text
//! φ(z_e, x_e, t) = 2·σ_i a²/(4σ_r) ∫_{z_i−L1}^{z_i+L2} J(z, t) · g'(z_e − z) dz,
//! J = ∂V_m/∂z = −sign(z − z_i)·V'(v t − |z − z_i|),   g(w) = (σ_z/σ_r·ρ² + w²)^{−1/2}
//! ```
//!
//! with `ρ² = (x_e − x_u)² + h_eff²`. **Skin/fat low-pass:** the fat and skin layers are replaced
//! by extra muscle-equivalent depth, `h_eff = h + κ·(t_fat + t_skin)` (κ = `layer_depth_factor`,
//! 1 by default) — deeper sources give smaller and broader MUAPs, which is the spatial low-pass
//! effect of the layers to first order. **Electrode size:** the potential is averaged over the
//! electrode disc with a 7-point rule (centre weight 1/4; six points at radius `r_e·√(2/3)`,
//! weight 1/8 each; exact for polynomials of degree 3).
//!
//! The integral is evaluated with the midpoint rule on source points spaced `δ = v·dt/q`
//! (`q = ⌈v·dt / δ_max⌉`), so that `V'` is needed only on a fixed table and each template sample is
//! a short dot product: `φ[n] = C Σ_j V'((n q − j − ½)δ)·E[j]`.
//!
//! **Unit size and depth.** A unit with `N_f` fibres gives `N_f` times the equivalent fibre's
//! potential (fibres are summed coherently — the spread of fibre positions and NMJs inside a
//! territory is not modelled). `N_f ∝` the unit's peak twitch (Fuglevand: `P_i = RP^{i/(N−1)}`,
//! recruitment order = pool order, smallest first), normalised to the muscle's total fibre count.
//! So amplitude ∝ size; amplitude falls and duration grows with depth and with transverse
//! distance (volume-conductor spread), and duration shrinks with the conduction velocity, which
//! rises with unit size (`v_i = v_min + (v_max − v_min)·i/(N−1)`).
//!
//! **Sampling.** Templates are computed directly at the simulation time step `dt_s` (no
//! resampling): tap `k` is the potential `k·dt_s` after the spike (tap 0 = spike time).
//!
//! **Not implemented (documented later option):** MyoGen's four-layer cylindrical volume
//! conductor (Farina & Merletti; bone/muscle/fat/skin with Bessel-function transfer functions,
//! MODEL.md §4.1). MyoGen needs ≈1.1 s per fibre for it on this machine kind — ≈18 h for a
//! 100-unit muscle; a batched FFT implementation should take minutes. Templates from such a model
//! (e.g. exported from MyoGen) can be loaded with [`MuapTemplates::from_values`].

use burn::tensor::Tensor;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::electrodes::ElectrodeArray;
use crate::error::{Error, Result, check};
use crate::kernel::Ctx;

/// `λζ` beyond which the IAP derivative `V'(ζ)` is treated as 0 (`ζ³e^{−ζ}` ≈ 10⁻⁷ of its peak).
const LAMBDA_ZETA_MAX: f64 = 25.0;

/// Tissue conductivities and layer thicknesses (SI). Defaults: MyoGen's muscle (§4.1).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VolumeConductor {
    /// Muscle conductivity across the fibres `σ_r` (S/m). Default 0.09.
    pub sigma_radial_s_per_m: f64,
    /// Muscle conductivity along the fibres `σ_z` (S/m). Default 0.4.
    pub sigma_long_s_per_m: f64,
    /// Intracellular conductivity `σ_i` (S/m). Default 1.01.
    pub sigma_intra_s_per_m: f64,
    /// Muscle fibre radius `a` (m). Default 25 µm.
    pub fibre_radius_m: f64,
    /// Subcutaneous fat thickness (m). Default 0.3 mm.
    pub fat_m: f64,
    /// Skin thickness (m). Default 1.29 mm.
    pub skin_m: f64,
    /// κ: muscle-equivalent depth per metre of fat + skin. Default 1.
    pub layer_depth_factor: f64,
    /// Insulating skin plane (image source, factor 2) if true; infinite medium if false.
    pub half_space: bool,
}

impl Default for VolumeConductor {
    fn default() -> Self {
        Self {
            sigma_radial_s_per_m: 0.09,
            sigma_long_s_per_m: 0.4,
            sigma_intra_s_per_m: 1.01,
            fibre_radius_m: 25e-6,
            fat_m: 0.3e-3,
            skin_m: 1.29e-3,
            layer_depth_factor: 1.0,
            half_space: true,
        }
    }
}

impl VolumeConductor {
    /// Checks every field (conductivities and radius > 0, thicknesses and κ ≥ 0).
    pub fn validate(&self) -> Result<()> {
        check::positive("sigma_radial_s_per_m", self.sigma_radial_s_per_m)?;
        check::positive("sigma_long_s_per_m", self.sigma_long_s_per_m)?;
        check::positive("sigma_intra_s_per_m", self.sigma_intra_s_per_m)?;
        check::positive("fibre_radius_m", self.fibre_radius_m)?;
        check::non_negative("fat_m", self.fat_m)?;
        check::non_negative("skin_m", self.skin_m)?;
        check::non_negative("layer_depth_factor", self.layer_depth_factor)?;
        Ok(())
    }
}

/// Rosenfalck IAP `V(ζ) = A ζ³ e^{−λζ}` (ζ in m behind the front).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Iap {
    /// `A` (V/m³). Default 9.6·10⁷ (= 96 mV/mm³).
    pub amplitude_v_per_m3: f64,
    /// `λ` (1/m). Default 1000 (= 1/mm).
    pub lambda_per_m: f64,
}

impl Default for Iap {
    fn default() -> Self {
        Self {
            amplitude_v_per_m3: 9.6e7,
            lambda_per_m: 1e3,
        }
    }
}

impl Iap {
    /// `V'(ζ) = A (3ζ² − λζ³) e^{−λζ}` (V/m) for ζ ≥ 0, else 0.
    pub fn dv_dzeta(&self, zeta_m: f64) -> f64 {
        if zeta_m <= 0.0 {
            return 0.0;
        }
        let l = self.lambda_per_m;
        self.amplitude_v_per_m3
            * (3.0 * zeta_m * zeta_m - l * zeta_m * zeta_m * zeta_m)
            * (-l * zeta_m).exp()
    }
    /// Spatial extent (m) beyond which `V'` is negligible: `25/λ`.
    pub fn extent_m(&self) -> f64 {
        LAMBDA_ZETA_MAX / self.lambda_per_m
    }
    fn validate(&self) -> Result<()> {
        check::positive("iap.amplitude_v_per_m3", self.amplitude_v_per_m3)?;
        check::positive("iap.lambda_per_m", self.lambda_per_m)?;
        Ok(())
    }
}

/// Geometry and physiology of one motor unit's equivalent fibre (SI; module docs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MotorUnitGeometry {
    /// Number of fibres `N_f` (amplitude scale; need not be an integer).
    pub n_fibres: f64,
    /// Depth of the territory centre below the muscle surface `h` (m).
    pub depth_m: f64,
    /// Transverse position of the territory centre `x_u` (m).
    pub x_m: f64,
    /// NMJ (innervation zone) position along the fibres `z_i` (m).
    pub z_nmj_m: f64,
    /// Conduction velocity `v` (m/s).
    pub cv_m_s: f64,
    /// Fibre semi-length towards −z, `L1` (m).
    pub left_m: f64,
    /// Fibre semi-length towards +z, `L2` (m).
    pub right_m: f64,
}

impl MotorUnitGeometry {
    /// Checks the fields of unit `i` (names the unit in the error).
    pub fn validate(&self, i: usize) -> Result<()> {
        check::non_negative(&format!("units[{i}].n_fibres"), self.n_fibres)?;
        check::non_negative(&format!("units[{i}].depth_m"), self.depth_m)?;
        check::finite(&format!("units[{i}].x_m"), self.x_m)?;
        check::finite(&format!("units[{i}].z_nmj_m"), self.z_nmj_m)?;
        check::positive(&format!("units[{i}].cv_m_s"), self.cv_m_s)?;
        check::non_negative(&format!("units[{i}].left_m"), self.left_m)?;
        check::non_negative(&format!("units[{i}].right_m"), self.right_m)?;
        Ok(())
    }
}

/// How a pool's units are laid out in the muscle (SI). Per unit `i = 0..N` (recruitment order,
/// smallest first), with `f = i/(N−1)`: `N_f ∝ P_i` (peak twitch, default `RP^f`) normalised to
/// `total_fibres`; depth ~ U(depth_min, depth_max); `x` ~ U(−x_half_width, x_half_width);
/// `z_i` = `iz_z_m` + U(−iz_spread, iz_spread); `v = cv_min + (cv_max − cv_min)·f`; semi-lengths
/// `fibre_left_m`, `fibre_right_m`. Random draws from `StdRng::seed_from_u64(seed)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolGeometry {
    /// Total number of fibres of the pool. Default 150,000.
    pub total_fibres: f64,
    /// Largest / smallest unit size (= twitch range RP). Default 100.
    pub size_ratio: f64,
    /// Shallowest territory centre below the muscle surface (m). Default 1 mm.
    pub depth_min_m: f64,
    /// Deepest territory centre (m). Default 15 mm.
    pub depth_max_m: f64,
    /// Half width of the muscle across the fibres (m). Default 15 mm.
    pub x_half_width_m: f64,
    /// Slowest conduction velocity (m/s), smallest unit. Default 3.0.
    pub cv_min_m_s: f64,
    /// Fastest conduction velocity (m/s), largest unit. Default 5.0.
    pub cv_max_m_s: f64,
    /// Innervation-zone centre along the fibres (m). Default 0 (the grid centre by default).
    pub iz_z_m: f64,
    /// Half spread of the NMJ positions (m). Default 5 mm.
    pub iz_spread_m: f64,
    /// Fibre semi-length towards −z (m). Default 50 mm.
    pub fibre_left_m: f64,
    /// Fibre semi-length towards +z (m). Default 50 mm.
    pub fibre_right_m: f64,
}

impl Default for PoolGeometry {
    fn default() -> Self {
        Self {
            total_fibres: 150_000.0,
            size_ratio: 100.0,
            depth_min_m: 1e-3,
            depth_max_m: 15e-3,
            x_half_width_m: 15e-3,
            cv_min_m_s: 3.0,
            cv_max_m_s: 5.0,
            iz_z_m: 0.0,
            iz_spread_m: 5e-3,
            fibre_left_m: 50e-3,
            fibre_right_m: 50e-3,
        }
    }
}

impl PoolGeometry {
    fn validate(&self) -> Result<()> {
        check::positive("total_fibres", self.total_fibres)?;
        check::positive("size_ratio", self.size_ratio)?;
        check::non_negative("depth_min_m", self.depth_min_m)?;
        check::in_range(
            "depth_max_m",
            self.depth_max_m,
            self.depth_min_m,
            f64::INFINITY,
        )?;
        check::non_negative("x_half_width_m", self.x_half_width_m)?;
        // Territories are drawn uniformly from [-w, w]: 2w must be finite (rand panics on an
        // infinite range), likewise for the innervation-zone spread.
        for (field, w) in [
            ("x_half_width_m", self.x_half_width_m),
            ("iz_spread_m", self.iz_spread_m),
        ] {
            if !(2.0 * w).is_finite() {
                return Err(Error::invalid(
                    field,
                    w,
                    "finite and >= 0 with a finite range [-w, w]",
                ));
            }
        }
        check::positive("cv_min_m_s", self.cv_min_m_s)?;
        check::in_range("cv_max_m_s", self.cv_max_m_s, self.cv_min_m_s, 1e3)?;
        check::finite("iz_z_m", self.iz_z_m)?;
        check::non_negative("iz_spread_m", self.iz_spread_m)?;
        check::non_negative("fibre_left_m", self.fibre_left_m)?;
        check::non_negative("fibre_right_m", self.fibre_right_m)?;
        Ok(())
    }

    /// `n_units` units with sizes `RP^{i/(N−1)}` (Fuglevand's peak-twitch law), smallest first.
    pub fn units(&self, n_units: usize, seed: u64) -> Result<Vec<MotorUnitGeometry>> {
        check::count_at_least("n_units", n_units, 1)?;
        check::positive("size_ratio", self.size_ratio)?;
        let sizes: Vec<f64> = (0..n_units)
            .map(|i| self.size_ratio.powf(frac(i, n_units)))
            .collect();
        self.units_from_twitch(&sizes, seed)
    }

    /// One unit per entry of `peak_twitch` (any positive unit; only ratios matter), in pool order:
    /// `N_f,i = total_fibres · P_i / Σ P`.
    pub fn units_from_twitch(
        &self,
        peak_twitch: &[f64],
        seed: u64,
    ) -> Result<Vec<MotorUnitGeometry>> {
        self.validate()?;
        let n = peak_twitch.len();
        check::count_at_least("n_units", n, 1)?;
        for (i, &p) in peak_twitch.iter().enumerate() {
            check::positive(&format!("peak_twitch[{i}]"), p)?;
        }
        let total: f64 = peak_twitch.iter().sum();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut uni = |lo: f64, hi: f64| {
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        };
        Ok(peak_twitch
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let f = frac(i, n);
                MotorUnitGeometry {
                    n_fibres: self.total_fibres * p / total,
                    depth_m: uni(self.depth_min_m, self.depth_max_m),
                    x_m: uni(-self.x_half_width_m, self.x_half_width_m),
                    z_nmj_m: self.iz_z_m + uni(-self.iz_spread_m, self.iz_spread_m),
                    cv_m_s: self.cv_min_m_s + (self.cv_max_m_s - self.cv_min_m_s) * f,
                    left_m: self.fibre_left_m,
                    right_m: self.fibre_right_m,
                }
            })
            .collect())
    }
}

fn frac(i: usize, n: usize) -> f64 {
    if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        0.0
    }
}

/// Numerical settings and physics of the analytic MUAP model.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct MuapModel {
    /// Volume conductor.
    pub conductor: VolumeConductor,
    /// IAP shape.
    pub iap: Iap,
}

/// Largest source-point spacing δ_max (m) of the midpoint rule.
pub const MAX_SOURCE_STEP_M: f64 = 0.2e-3;

impl MuapModel {
    /// Number of taps that hold every unit's whole MUAP:
    /// `K = max_u ⌈(max(L1, L2) + 25/λ) / (v·dt)⌉ + 1`.
    pub fn auto_taps(&self, units: &[MotorUnitGeometry], dt_s: f64) -> Result<usize> {
        check::positive("dt_s", dt_s)?;
        let mut k = 1usize;
        for (i, u) in units.iter().enumerate() {
            u.validate(i)?;
            let dur = (u.left_m.max(u.right_m) + self.iap.extent_m()) / u.cv_m_s;
            k = k.max((dur / dt_s).ceil() as usize + 1);
        }
        Ok(k)
    }

    /// Monopolar potential (V) of one unit at every electrode: `[rows·cols, n_taps]` row-major
    /// (module docs for the equation).
    pub fn unit_monopolar(
        &self,
        grid: &ElectrodeArray,
        u: &MotorUnitGeometry,
        dt_s: f64,
        n_taps: usize,
    ) -> Vec<f64> {
        let vc = &self.conductor;
        let vdt = u.cv_m_s * dt_s;
        let q = (vdt / MAX_SOURCE_STEP_M).ceil().max(1.0) as usize;
        let delta = vdt / q as f64;
        let w_max = (self.iap.extent_m() / delta).ceil() as usize;
        // V'((i − ½)δ), i = 1..=w_max (index 0 unused)
        let vt: Vec<f64> = (0..=w_max)
            .map(|i| {
                if i == 0 {
                    0.0
                } else {
                    self.iap.dv_dzeta((i as f64 - 0.5) * delta)
                }
            })
            .collect();
        let nr = (u.right_m / delta).round() as usize;
        let nl = (u.left_m / delta).round() as usize;
        let nj = nr.max(nl);
        let aniso = vc.sigma_long_s_per_m / vc.sigma_radial_s_per_m;
        let h_eff = u.depth_m + vc.layer_depth_factor * (vc.fat_m + vc.skin_m);
        let image = if vc.half_space { 2.0 } else { 1.0 };
        let pref = image * u.n_fibres * vc.sigma_intra_s_per_m * vc.fibre_radius_m.powi(2)
            / (4.0 * vc.sigma_radial_s_per_m)
            * delta;
        let quad: Vec<(f64, f64, f64)> = if grid.radius_m > 0.0 {
            let r = grid.radius_m * (2.0f64 / 3.0).sqrt();
            let mut q = vec![(0.0, 0.0, 0.25)];
            for k in 0..6 {
                let a = k as f64 * std::f64::consts::PI / 3.0;
                q.push((r * a.cos(), r * a.sin(), 0.125));
            }
            q
        } else {
            vec![(0.0, 0.0, 1.0)]
        };
        // g'(w) = −w (aρ² + w²)^{−3/2}
        let gp = |w: f64, a_rho2: f64| {
            let s = a_rho2 + w * w;
            -w / (s * s.sqrt())
        };
        let mut out = vec![0.0; grid.n_electrodes() * n_taps];
        let mut e_j = vec![0.0; nj];
        for r in 0..grid.rows {
            for c in 0..grid.cols {
                let (ze, xe) = grid.electrode_zx_m(r, c);
                e_j.iter_mut().for_each(|v| *v = 0.0);
                for &(dz, dx, wq) in &quad {
                    let dxu = xe + dx - u.x_m;
                    let a_rho2 = aniso * (dxu * dxu + h_eff * h_eff);
                    let w0 = ze + dz - u.z_nmj_m;
                    for (j, e) in e_j.iter_mut().enumerate() {
                        let s = (j as f64 + 0.5) * delta;
                        // left wave: J = +V' at z = z_i − s; right wave: J = −V' at z = z_i + s
                        let mut v = 0.0;
                        if j < nl {
                            v += gp(w0 + s, a_rho2);
                        }
                        if j < nr {
                            v -= gp(w0 - s, a_rho2);
                        }
                        *e += wq * v;
                    }
                }
                let dst = &mut out[(r * grid.cols + c) * n_taps..(r * grid.cols + c + 1) * n_taps];
                for (n, d) in dst.iter_mut().enumerate() {
                    let nq = n * q;
                    // 1 ≤ nq − j ≤ w_max
                    let j_lo = nq.saturating_sub(w_max);
                    let j_hi = nq.min(nj); // exclusive: j ≤ nq − 1
                    let mut acc = 0.0;
                    for j in j_lo..j_hi {
                        acc += vt[nq - j] * e_j[j];
                    }
                    *d = pref * acc;
                }
            }
        }
        out
    }
}

/// MUAP templates `[n_units, rows, cols, n_taps]` (V) on the (differentiated) output grid, sampled
/// at `dt_s` from the spike time (tap 0).
#[derive(Clone, Debug, PartialEq)]
pub struct MuapTemplates {
    /// Number of units.
    pub n_units: usize,
    /// Output grid rows.
    pub rows: usize,
    /// Output grid columns.
    pub cols: usize,
    /// Taps per template.
    pub n_taps: usize,
    /// Sampling step (s).
    pub dt_s: f64,
    /// Values (V), row-major `[n_units, rows, cols, n_taps]`.
    pub data: Vec<f64>,
}

impl MuapTemplates {
    /// Templates of `units` on `grid` (differentiated by the grid's mode) with the analytic model,
    /// sampled at `dt_s` (s); `n_taps` = `None` → [`MuapModel::auto_taps`]. Runs the units on all
    /// available cores. Errors: invalid model, unit or `dt_s`; no units; zero taps.
    pub fn compute(
        grid: &ElectrodeArray,
        units: &[MotorUnitGeometry],
        model: &MuapModel,
        dt_s: f64,
        n_taps: Option<usize>,
    ) -> Result<Self> {
        model.conductor.validate()?;
        model.iap.validate()?;
        check::count_at_least("n_units", units.len(), 1)?;
        let k = match n_taps {
            Some(k) => check::count_at_least("n_taps", k, 1)?,
            None => model.auto_taps(units, dt_s)?,
        };
        check::positive("dt_s", dt_s)?;
        for (i, u) in units.iter().enumerate() {
            u.validate(i)?;
        }
        let n_out = grid.n_outputs();
        let per = n_out * k;
        let mut data = vec![0.0; units.len() * per];
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, units.len());
        let chunk = units.len().div_ceil(threads);
        std::thread::scope(|sc| -> Result<()> {
            let mut handles = Vec::new();
            for (us, dst) in units.chunks(chunk).zip(data.chunks_mut(chunk * per)) {
                handles.push(sc.spawn(move || -> Result<()> {
                    for (u, d) in us.iter().zip(dst.chunks_mut(per)) {
                        let mono = model.unit_monopolar(grid, u, dt_s, k);
                        d.copy_from_slice(&grid.differentiate(&mono, k)?);
                    }
                    Ok(())
                }));
            }
            for h in handles {
                h.join()
                    .map_err(|_| Error::config("muap", "template worker panicked"))??;
            }
            Ok(())
        })?;
        let (rows, cols) = grid.output_shape();
        Self::from_values(data, units.len(), rows, cols, k, dt_s)
    }

    /// Templates from given values (V), e.g. exported from MyoGen's layered model: `data` row-major
    /// `[n_units, rows, cols, n_taps]` sampled at `dt_s`. Errors: zero sizes, wrong length, NaN.
    pub fn from_values(
        data: Vec<f64>,
        n_units: usize,
        rows: usize,
        cols: usize,
        n_taps: usize,
        dt_s: f64,
    ) -> Result<Self> {
        check::count_at_least("n_units", n_units, 1)?;
        check::count_at_least("rows", rows, 1)?;
        check::count_at_least("cols", cols, 1)?;
        check::count_at_least("n_taps", n_taps, 1)?;
        check::positive("dt_s", dt_s)?;
        let expected = n_units * rows * cols * n_taps;
        if data.len() != expected {
            return Err(Error::shape(
                "muap templates",
                format!("{expected} = [{n_units}, {rows}, {cols}, {n_taps}]"),
                data.len(),
            ));
        }
        check::all_finite("muap templates", &data)?;
        Ok(Self {
            n_units,
            rows,
            cols,
            n_taps,
            dt_s,
            data,
        })
    }

    /// Number of output channels `rows·cols`.
    pub fn n_channels(&self) -> usize {
        self.rows * self.cols
    }

    /// Template of unit `u` at output channel `ch` (= r·cols + c): `n_taps` values (V).
    pub fn channel(&self, u: usize, ch: usize) -> &[f64] {
        let k = self.n_taps;
        let off = (u * self.n_channels() + ch) * k;
        &self.data[off..off + k]
    }

    /// Peak-to-peak amplitude (V) of unit `u` at channel `ch`.
    pub fn peak_to_peak(&self, u: usize, ch: usize) -> f64 {
        let x = self.channel(u, ch);
        let mx = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mn = x.iter().cloned().fold(f64::INFINITY, f64::min);
        mx - mn
    }

    /// As a tensor `[n_units, rows, cols, n_taps]` (V).
    pub fn to_tensor(&self, ctx: &Ctx) -> Tensor<4> {
        ctx.tensor(
            self.data.clone(),
            [self.n_units, self.rows, self.cols, self.n_taps],
        )
    }
}
