//! Size-principle parameter distribution of the NERLab motor-neuron pool (MODEL.md §1.5; MyoGen
//! `AlphaMN__Pool._create_nerlab_cells`, YAML `alpha_mn_default.yaml`), plus the per-unit axon
//! (conduction velocity and delay, §1.1).
//!
//! Units are NEURON's, as in MyoGen: µm, S/cm², mV, ms, 1/ms, Ω·cm, µF/cm². Each parameter has a
//! range `[first, last, curve, negative]`:
//! - with recruitment thresholds `rt_i` (normalised, e.g. `[1/RR, 1]`), the parameter is linear in
//!   the threshold: `p_i = rt_i·(last − first) + first` when `negative = false`, and
//!   `p_i = rt_i·(first − last) + last` when `negative = true` (the flag swaps which end the
//!   low-threshold unit takes; this is what MyoGen 0.12 does, checked against `mn_params_n800.csv`);
//! - without thresholds, MyoGen's `_exp_interp(first, last, n, curv = 1/curve, negative)`: the
//!   exponential `y(x) = a·q^{x/2} + c` through `(0, y0)`, `(2, y1)`, `(4, y2)` on `x = linspace(0, 4, n)`
//!   (closed form of its `scipy.curve_fit` through those three points, see [`exp_interp`]).

use crate::error::{Error, Result, check};

/// One parameter range `[first, last, curve, negative]` (YAML `nerlab.*`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParamRange {
    /// Value at the low-threshold end (unless `negative`).
    pub first: f64,
    /// Value at the high-threshold end (unless `negative`).
    pub last: f64,
    /// Curvature of the exponential fallback (`curv = 1/curve`, must be ≥ 2).
    pub curve: f64,
    /// Swaps the ends in the threshold mapping (see module docs).
    pub negative: bool,
}

impl ParamRange {
    /// `[first, last, curve, negative]`.
    pub const fn new(first: f64, last: f64, curve: f64, negative: bool) -> Self {
        Self {
            first,
            last,
            curve,
            negative,
        }
    }

    /// The value for a normalised threshold `rt`: `rt·(last − first) + first`, or
    /// `rt·(first − last) + last` when `negative`.
    pub fn at_threshold(&self, rt: f64) -> f64 {
        if self.negative {
            rt * (self.first - self.last) + self.last
        } else {
            rt * (self.last - self.first) + self.first
        }
    }
}

/// The NERLab parameter ranges (MODEL.md §1.5 table; MyoGen defaults). The leak conductances are
/// the YAML's decimals (0.000952381 ≈ 1/1050, 0.001538462 ≈ 1/650, 7.69231e-05 ≈ 1/13000,
/// 0.000165289 ≈ 1/6050), which is what MyoGen instantiates (to 1e-9, vs ~1e-6 for the fractions).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NerlabRanges {
    /// Soma diameter (= length), µm.
    pub soma_diam_um: ParamRange,
    /// Fast Na conductance density, S/cm².
    pub gnabar: ParamRange,
    /// Persistent Na conductance density, S/cm².
    pub gnapbar: ParamRange,
    /// Fast K conductance density, S/cm².
    pub gkfbar: ParamRange,
    /// Slow K (AHP) conductance density, S/cm².
    pub gksbar: ParamRange,
    /// `mact` (stored by MyoGen, unused by the dynamics), mV.
    pub mact_mv: ParamRange,
    /// Slow-K deactivation rate `rinact`, 1/ms.
    pub rinact_per_ms: ParamRange,
    /// Soma leak conductance density, S/cm².
    pub gl_soma: ParamRange,
    /// Dendrite diameter, µm.
    pub dend_diam_um: ParamRange,
    /// Dendrite length, µm.
    pub dend_l_um: ParamRange,
    /// Dendritic L-type Ca conductance density (before `gamma`), S/cm².
    pub gcalbar: ParamRange,
    /// caL activation offset `vtraub_caL`, mV (`L∞ = 1/(1 + exp(−(v − vtraub + 30)/1))`).
    pub vtraub_cal_mv: ParamRange,
    /// caL activation time constant, ms.
    pub ltau_cal_ms: ParamRange,
    /// Dendrite leak conductance density, S/cm².
    pub gl_dend: ParamRange,
}

impl Default for NerlabRanges {
    fn default() -> Self {
        Self {
            soma_diam_um: ParamRange::new(78.0, 113.0, 14.0, false),
            gnabar: ParamRange::new(0.0325, 0.0775, 2.5, false),
            gnapbar: ParamRange::new(0.00043, 0.00067, 2.1, true),
            gkfbar: ParamRange::new(0.0028, 0.0015, 25.0, true),
            gksbar: ParamRange::new(0.02, 0.016, 6.0, true),
            mact_mv: ParamRange::new(13.0, 20.0, 3.0, false),
            rinact_per_ms: ParamRange::new(0.018, 0.063, 4.0, false),
            gl_soma: ParamRange::new(0.000952381, 0.001538462, 2.5, false),
            dend_diam_um: ParamRange::new(48.0, 90.0, 5.0, false),
            dend_l_um: ParamRange::new(5500.0, 10600.0, 12.0, false),
            gcalbar: ParamRange::new(1.25e-5, 6.2e-6, 3.0, true),
            vtraub_cal_mv: ParamRange::new(35.0, 34.0, 30.0, true),
            ltau_cal_ms: ParamRange::new(90.0, 47.0, 3.0, true),
            gl_dend: ParamRange::new(7.69231e-05, 0.000165289, 2.5, false),
        }
    }
}

/// Pool-wide constants of the NERLab cell (MyoGen sets the same value for every unit).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NerlabConstants {
    /// Na reversal `ena`, mV (120).
    pub ena_mv: f64,
    /// K reversal `ek`, mV (−10).
    pub ek_mv: f64,
    /// Soma leak reversal `el_napp`, mV (0).
    pub el_soma_mv: f64,
    /// Gating offset `vtraub_napp`, mV (0; gates are evaluated at `v − vtraub`).
    pub vtraub_napp_mv: f64,
    /// caL reversal `ecaL`, mV (140).
    pub ecal_mv: f64,
    /// Dendrite leak reversal `el_caL`, mV (0).
    pub el_dend_mv: f64,
    /// Axial resistivity of both sections, Ω·cm (70).
    pub ra_ohm_cm: f64,
    /// Specific capacitance of both sections, µF/cm² (1).
    pub cm_uf_cm2: f64,
    /// Neuromodulation factor `gamma` scaling the caL conductance (0.2).
    pub gamma: f64,
    /// Axon length, m (MyoGen passes 0.6 "mm" as metres).
    pub axon_length_m: f64,
    /// Conduction velocities of the first and last unit, m/s (`linspace(50, 65, N)`).
    pub axon_velocity_range_m_s: (f64, f64),
}

impl Default for NerlabConstants {
    fn default() -> Self {
        Self {
            ena_mv: 120.0,
            ek_mv: -10.0,
            el_soma_mv: 0.0,
            vtraub_napp_mv: 0.0,
            ecal_mv: 140.0,
            el_dend_mv: 0.0,
            ra_ohm_cm: 70.0,
            cm_uf_cm2: 1.0,
            gamma: 0.2,
            axon_length_m: 0.6,
            axon_velocity_range_m_s: (50.0, 65.0),
        }
    }
}

impl NerlabConstants {
    fn validate(&self) -> Result<()> {
        for (f, v) in [
            ("ena_mv", self.ena_mv),
            ("ek_mv", self.ek_mv),
            ("el_soma_mv", self.el_soma_mv),
            ("vtraub_napp_mv", self.vtraub_napp_mv),
            ("ecal_mv", self.ecal_mv),
            ("el_dend_mv", self.el_dend_mv),
        ] {
            check::finite(f, v)?;
        }
        check::positive("ra_ohm_cm", self.ra_ohm_cm)?;
        check::positive("cm_uf_cm2", self.cm_uf_cm2)?;
        check::non_negative("gamma", self.gamma)?;
        check::non_negative("axon_length_m", self.axon_length_m)?;
        check::positive("axon_velocity_range_m_s.0", self.axon_velocity_range_m_s.0)?;
        check::positive("axon_velocity_range_m_s.1", self.axon_velocity_range_m_s.1)?;
        Ok(())
    }
}

/// Per-unit parameters of an NERLab pool (struct of arrays, one value per unit, NEURON units),
/// plus the pool constants. Soma length = soma diameter (MyoGen sets `L = diam`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NerlabParams {
    /// Recruitment threshold used for the mapping (`None` for the exp-interp fallback).
    pub rt: Option<Vec<f64>>,
    /// Soma diameter = length, µm.
    pub soma_diam_um: Vec<f64>,
    /// Fast Na, S/cm².
    pub gnabar: Vec<f64>,
    /// Persistent Na, S/cm².
    pub gnapbar: Vec<f64>,
    /// Fast K, S/cm².
    pub gkfbar: Vec<f64>,
    /// Slow K (AHP), S/cm².
    pub gksbar: Vec<f64>,
    /// Soma leak, S/cm².
    pub gl_soma: Vec<f64>,
    /// `mact`, mV (unused by the dynamics).
    pub mact_mv: Vec<f64>,
    /// Slow-K deactivation rate, 1/ms.
    pub rinact_per_ms: Vec<f64>,
    /// Dendrite length, µm.
    pub dend_l_um: Vec<f64>,
    /// Dendrite diameter, µm.
    pub dend_diam_um: Vec<f64>,
    /// caL conductance density (before `gamma`), S/cm².
    pub gcalbar: Vec<f64>,
    /// caL activation offset, mV.
    pub vtraub_cal_mv: Vec<f64>,
    /// caL time constant, ms.
    pub ltau_cal_ms: Vec<f64>,
    /// Dendrite leak, S/cm².
    pub gl_dend: Vec<f64>,
    /// Axonal conduction velocity, m/s (`linspace(v_first, v_last, N)`).
    pub conduction_velocity_m_s: Vec<f64>,
    /// Axonal delay `axon_length / cv`, s.
    pub axon_delay_s: Vec<f64>,
    /// Pool constants.
    pub constants: NerlabConstants,
}

/// `numpy.linspace(a, b, n)` (endpoint included; `[a]` for `n = 1`).
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => {
            let step = (b - a) / (n - 1) as f64;
            (0..n)
                .map(|i| if i == n - 1 { b } else { a + step * i as f64 })
                .collect()
        }
    }
}

/// MyoGen's `_exp_interp(first, last, n, curv, negative)` in closed form.
///
/// On `x = linspace(0, 4, n)`, the exponential `y(x) = a·q^{x/2} + c` through three points:
/// - increasing branch (`first ≤ last`, or `last ≤ first` when `negative`): points
///   `(0, 1)`, `(2, 1 + (last/first − 1)·curv)`, `(4, last/first)`, scaled by `first`; `q = 1/curv − 1`;
/// - decreasing branch (otherwise): `(0, first/last)`, `(2, 1 + (first/last − 1)·curv)`, `(4, 1)`,
///   scaled by `last`; `q = curv/(1 − curv)`;
///
/// with `a = (y1 − y0)/(q − 1)`, `c = y0 − a`. (MyoGen fits `a·e^{±bx} + c` with `curve_fit`
/// through the same points; the fit is exact.) Requires `0 < curv < 0.5`, `first, last ≠ 0`.
pub fn exp_interp(first: f64, last: f64, n: usize, curv: f64, negative: bool) -> Result<Vec<f64>> {
    check::count_at_least("n", n, 1)?;
    if !(curv.is_finite() && curv > 0.0 && curv < 0.5) {
        return Err(Error::invalid("curv", curv, "(0, 0.5) (i.e. curve > 2)"));
    }
    check::finite("first", first)?;
    check::finite("last", last)?;
    if first == 0.0 || last == 0.0 {
        return Err(Error::invalid(
            "first/last",
            format!("{first}/{last}"),
            "non-zero end values",
        ));
    }
    let increasing = if negative {
        last <= first
    } else {
        first <= last
    };
    let (y0, y1, y2, scale, q) = if increasing {
        let r = last / first;
        (1.0, 1.0 + (r - 1.0) * curv, r, first, 1.0 / curv - 1.0)
    } else {
        let r = first / last;
        (r, 1.0 + (r - 1.0) * curv, 1.0, last, curv / (1.0 - curv))
    };
    debug_assert!(((y2 - y0) / (y1 - y0) - (q + 1.0)).abs() < 1e-9 || y1 == y0);
    let a = if y1 == y0 { 0.0 } else { (y1 - y0) / (q - 1.0) };
    let c = y0 - a;
    Ok(linspace(0.0, 4.0, n)
        .into_iter()
        .map(|x| (a * q.powf(x / 2.0) + c) * scale)
        .collect())
}

impl NerlabParams {
    /// Parameters linear in the recruitment thresholds `rt` (each in `[0, 1]`), MyoGen's mapping
    /// when `recruitment_thresholds__array` is given (module docs), with default ranges.
    pub fn from_thresholds(rt: &[f64], constants: NerlabConstants) -> Result<Self> {
        Self::from_thresholds_with(rt, &NerlabRanges::default(), constants)
    }

    /// As [`NerlabParams::from_thresholds`] with explicit ranges.
    pub fn from_thresholds_with(
        rt: &[f64],
        ranges: &NerlabRanges,
        constants: NerlabConstants,
    ) -> Result<Self> {
        check::count_at_least("rt.len()", rt.len(), 1)?;
        for (i, &r) in rt.iter().enumerate() {
            if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
                return Err(Error::invalid(
                    format!("rt[{i}]"),
                    r,
                    "[0, 1] (normalised threshold)",
                ));
            }
        }
        let map = |p: &ParamRange| Ok(rt.iter().map(|&r| p.at_threshold(r)).collect::<Vec<f64>>());
        Self::assemble(Some(rt.to_vec()), rt.len(), ranges, constants, &map)
    }

    /// Parameters of `n` units without thresholds: MyoGen's exp-interp fallback ([`exp_interp`]
    /// with `curv = 1/curve`).
    pub fn exp_interp(n: usize, ranges: &NerlabRanges, constants: NerlabConstants) -> Result<Self> {
        check::count_at_least("n", n, 1)?;
        let map = |p: &ParamRange| exp_interp(p.first, p.last, n, 1.0 / p.curve, p.negative);
        Self::assemble(None, n, ranges, constants, &map)
    }

    fn assemble(
        rt: Option<Vec<f64>>,
        n: usize,
        r: &NerlabRanges,
        constants: NerlabConstants,
        map: &dyn Fn(&ParamRange) -> Result<Vec<f64>>,
    ) -> Result<Self> {
        constants.validate()?;
        let cv = linspace(
            constants.axon_velocity_range_m_s.0,
            constants.axon_velocity_range_m_s.1,
            n,
        );
        let delay = cv.iter().map(|v| constants.axon_length_m / v).collect();
        let p = Self {
            rt,
            soma_diam_um: map(&r.soma_diam_um)?,
            gnabar: map(&r.gnabar)?,
            gnapbar: map(&r.gnapbar)?,
            gkfbar: map(&r.gkfbar)?,
            gksbar: map(&r.gksbar)?,
            gl_soma: map(&r.gl_soma)?,
            mact_mv: map(&r.mact_mv)?,
            rinact_per_ms: map(&r.rinact_per_ms)?,
            dend_l_um: map(&r.dend_l_um)?,
            dend_diam_um: map(&r.dend_diam_um)?,
            gcalbar: map(&r.gcalbar)?,
            vtraub_cal_mv: map(&r.vtraub_cal_mv)?,
            ltau_cal_ms: map(&r.ltau_cal_ms)?,
            gl_dend: map(&r.gl_dend)?,
            conduction_velocity_m_s: cv,
            axon_delay_s: delay,
            constants,
        };
        p.validate()?;
        Ok(p)
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.soma_diam_um.len()
    }

    /// The sub-pool of units `idx` (in that order), e.g. to simulate a few units of a large pool
    /// with exactly the parameters the full pool gives them. Error: an index out of range.
    pub fn select(&self, idx: &[usize]) -> Result<Self> {
        check::count_at_least("idx.len()", idx.len(), 1)?;
        let n = self.len();
        if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
            return Err(Error::invalid("idx", bad, format!("unit indices < {n}")));
        }
        let s = |v: &Vec<f64>| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        Ok(Self {
            rt: self.rt.as_ref().map(s),
            soma_diam_um: s(&self.soma_diam_um),
            gnabar: s(&self.gnabar),
            gnapbar: s(&self.gnapbar),
            gkfbar: s(&self.gkfbar),
            gksbar: s(&self.gksbar),
            gl_soma: s(&self.gl_soma),
            mact_mv: s(&self.mact_mv),
            rinact_per_ms: s(&self.rinact_per_ms),
            dend_l_um: s(&self.dend_l_um),
            dend_diam_um: s(&self.dend_diam_um),
            gcalbar: s(&self.gcalbar),
            vtraub_cal_mv: s(&self.vtraub_cal_mv),
            ltau_cal_ms: s(&self.ltau_cal_ms),
            gl_dend: s(&self.gl_dend),
            conduction_velocity_m_s: s(&self.conduction_velocity_m_s),
            axon_delay_s: s(&self.axon_delay_s),
            constants: self.constants.clone(),
        })
    }

    /// Whether there are no units.
    pub fn is_empty(&self) -> bool {
        self.soma_diam_um.is_empty()
    }

    /// Checks lengths, finiteness and signs of every per-unit array (typed error naming the field
    /// and unit index).
    pub fn validate(&self) -> Result<()> {
        let n = self.len();
        check::count_at_least("n_units", n, 1)?;
        self.constants.validate()?;
        let positive: [(&str, &Vec<f64>); 8] = [
            ("soma_diam_um", &self.soma_diam_um),
            ("dend_l_um", &self.dend_l_um),
            ("dend_diam_um", &self.dend_diam_um),
            ("rinact_per_ms", &self.rinact_per_ms),
            ("ltau_cal_ms", &self.ltau_cal_ms),
            ("conduction_velocity_m_s", &self.conduction_velocity_m_s),
            ("gl_soma", &self.gl_soma),
            ("gl_dend", &self.gl_dend),
        ];
        let non_negative: [(&str, &Vec<f64>); 6] = [
            ("gnabar", &self.gnabar),
            ("gnapbar", &self.gnapbar),
            ("gkfbar", &self.gkfbar),
            ("gksbar", &self.gksbar),
            ("gcalbar", &self.gcalbar),
            ("axon_delay_s", &self.axon_delay_s),
        ];
        let finite: [(&str, &Vec<f64>); 2] = [
            ("vtraub_cal_mv", &self.vtraub_cal_mv),
            ("mact_mv", &self.mact_mv),
        ];
        for (name, v) in positive
            .iter()
            .chain(non_negative.iter())
            .chain(finite.iter())
        {
            if v.len() != n {
                return Err(Error::shape(*name, n, v.len()));
            }
        }
        for (name, v) in positive {
            for (i, &x) in v.iter().enumerate() {
                check::positive(&format!("{name}[{i}]"), x)?;
            }
        }
        for (name, v) in non_negative {
            for (i, &x) in v.iter().enumerate() {
                check::non_negative(&format!("{name}[{i}]"), x)?;
            }
        }
        for (name, v) in finite {
            check::all_finite(name, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_interp_hits_its_three_points() {
        for (first, last, curve, neg) in [
            (78.0, 113.0, 14.0, false),
            (0.0028, 0.0015, 25.0, true),
            (90.0, 47.0, 3.0, true),
            (0.00043, 0.00067, 2.1, true),
        ] {
            let curv = 1.0 / curve;
            let y = exp_interp(first, last, 5, curv, neg).unwrap();
            assert!((y[0] - first).abs() <= 1e-12 * first.abs(), "{y:?}");
            assert!((y[4] - last).abs() <= 1e-12 * last.abs(), "{y:?}");
            let increasing = if neg { last <= first } else { first <= last };
            let mid = if increasing {
                first + (last - first) * curv
            } else {
                last + (first - last) * curv
            };
            assert!((y[2] - mid).abs() <= 1e-12 * mid.abs(), "{y:?} vs {mid}");
        }
        assert!(exp_interp(1.0, 2.0, 3, 0.5, false).is_err());
        assert!(exp_interp(1.0, 2.0, 0, 0.2, false).is_err());
    }

    #[test]
    fn exp_interp_fallback_builds_a_valid_pool() {
        let p = NerlabParams::exp_interp(10, &NerlabRanges::default(), NerlabConstants::default())
            .unwrap();
        assert_eq!(p.len(), 10);
        assert!(
            (p.soma_diam_um[0] - 78.0).abs() < 1e-9 && (p.soma_diam_um[9] - 113.0).abs() < 1e-9
        );
        assert!(p.rt.is_none());
    }

    #[test]
    fn bad_thresholds_are_typed_errors() {
        let c = NerlabConstants::default();
        assert!(NerlabParams::from_thresholds(&[], c.clone()).is_err());
        assert!(matches!(
            NerlabParams::from_thresholds(&[0.1, f64::NAN], c.clone()),
            Err(Error::InvalidParameter { ref field, .. }) if field == "rt[1]"
        ));
        assert!(NerlabParams::from_thresholds(&[0.1, 1.5], c.clone()).is_err());
        let bad = NerlabConstants { gamma: -1.0, ..c };
        assert!(matches!(
            NerlabParams::from_thresholds(&[0.1], bad),
            Err(Error::InvalidParameter { ref field, .. }) if field == "gamma"
        ));
    }
}
