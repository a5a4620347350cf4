//! The faithful NERLab motor-neuron model against MyoGen 0.12 / NEURON 8.2.7 (fixtures 1 and 2
//! of the reference set, copied into tests/fixtures): recruitment thresholds, per-unit
//! parameters, f–I curves (rheobase, steady rates), voltage traces; bad input; gradient of a step.

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use myodiff::Error;
use myodiff::gradcheck::{GradCheck, central_differences};
use myodiff::kernel::{BufferSpec, Ctx, ExecPath, Simulation, scalar_f64, to_vec_f64};
use myodiff::neuron::SpikeMode;
use myodiff::neuron::nerlab::{
    self, E_SYN_EXC_MV, Nerlab, NerlabPool, NerlabState, NerlabTensors, V_INIT_MV,
};
use myodiff::neuron::nerlab_params::{NerlabConstants, NerlabParams};
use myodiff::neuron::recruitment::{RecruitmentMode, RecruitmentThresholds};

const FI_UNITS: [usize; 6] = [0, 100, 200, 400, 600, 799];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A CSV as (header → column index, rows of strings).
fn csv(name: &str) -> (BTreeMap<String, usize>, Vec<Vec<String>>) {
    let text = fixture(name);
    let mut lines = text.lines();
    let hdr = lines
        .next()
        .unwrap()
        .split(',')
        .enumerate()
        .map(|(i, h)| (h.to_string(), i))
        .collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(|s| s.to_string()).collect())
        .collect();
    (hdr, rows)
}

fn col(hdr: &BTreeMap<String, usize>, rows: &[Vec<String>], name: &str) -> Vec<f64> {
    let i = *hdr.get(name).unwrap_or_else(|| panic!("no column {name}"));
    rows.iter().map(|r| r[i].parse::<f64>().unwrap()).collect()
}

fn assert_rel(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs() + 1e-300,
            "{what}[{i}]: got {g}, want {w} (rel err {:.3e})",
            (g - w).abs() / w.abs()
        );
    }
}

fn watanabe_rt(n: usize) -> RecruitmentThresholds {
    RecruitmentThresholds::new(n, 100.0, 5.0, 1.0, RecruitmentMode::Combined).unwrap()
}

// ---------------------------------------------------------------- recruitment thresholds

#[test]
fn recruitment_thresholds_match_myogen_all_modes_n100() {
    let (h, rows) = csv("rt_n100_all_modes.csv");
    for (mode, name) in [
        (RecruitmentMode::Fuglevand, "fuglevand"),
        (RecruitmentMode::Deluca, "deluca"),
        (RecruitmentMode::Konstantin, "konstantin"),
        (RecruitmentMode::Combined, "combined"),
    ] {
        let r = RecruitmentThresholds::new(100, 100.0, 5.0, 1.0, mode).unwrap();
        assert_rel(
            &format!("rt_{name}"),
            &r.rt,
            &col(&h, &rows, &format!("rt_{name}")),
            1e-9,
        );
        assert_rel(
            &format!("rtz_{name}"),
            &r.rtz,
            &col(&h, &rows, &format!("rtz_{name}")),
            1e-9,
        );
    }
}

#[test]
fn recruitment_thresholds_match_myogen_combined_n800() {
    let (h, rows) = csv("rt_n800_combined.csv");
    let r = watanabe_rt(800);
    assert_rel("rt", &r.rt, &col(&h, &rows, "rt"), 1e-9);
    assert_rel("rtz", &r.rtz, &col(&h, &rows, "rtz"), 1e-9);
}

// ---------------------------------------------------------------- per-unit parameters

#[test]
fn per_unit_parameters_match_myogen_n800() {
    let (h, rows) = csv("mn_params_n800.csv");
    let rt = watanabe_rt(800);
    assert_rel("rt", &rt.rt, &col(&h, &rows, "rt"), 1e-9);
    let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default()).unwrap();
    let c = &p.constants;
    let n = p.len();
    let constant = |v: f64| vec![v; n];
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("soma_L_um", p.soma_diam_um.clone()),
        ("soma_diam_um", p.soma_diam_um.clone()),
        ("soma_nseg", constant(1.0)),
        ("soma_Ra_ohm_cm", constant(c.ra_ohm_cm)),
        ("soma_cm_uF_cm2", constant(c.cm_uf_cm2)),
        ("gnabar_napp", p.gnabar.clone()),
        ("gnapbar_napp", p.gnapbar.clone()),
        ("gkfbar_napp", p.gkfbar.clone()),
        ("gksbar_napp", p.gksbar.clone()),
        ("gl_napp", p.gl_soma.clone()),
        ("el_napp", constant(c.el_soma_mv)),
        ("mact_napp", p.mact_mv.clone()),
        ("rinact_napp", p.rinact_per_ms.clone()),
        ("vtraub_napp", constant(c.vtraub_napp_mv)),
        ("ena", constant(c.ena_mv)),
        ("ek", constant(c.ek_mv)),
        ("dend_L_um", p.dend_l_um.clone()),
        ("dend_diam_um", p.dend_diam_um.clone()),
        ("dend_nseg", constant(1.0)),
        ("dend_Ra_ohm_cm", constant(c.ra_ohm_cm)),
        ("dend_cm_uF_cm2", constant(c.cm_uf_cm2)),
        ("gcaLbar_caL", p.gcalbar.clone()),
        ("vtraub_caL", p.vtraub_cal_mv.clone()),
        ("Ltau_caL", p.ltau_cal_ms.clone()),
        ("gl_caL", p.gl_dend.clone()),
        ("el_caL", constant(c.el_dend_mv)),
        ("ecaL", constant(c.ecal_mv)),
        ("gama_caL", constant(c.gamma)),
        // the model hangs the dendrite from the soma's 0-end node (no parameter to compare)
        ("dend_connected_to_soma_at", constant(0.0)),
        ("conduction_velocity_m_s", p.conduction_velocity_m_s.clone()),
        (
            "axon_delay_ms",
            p.axon_delay_s.iter().map(|d| d * 1e3).collect(),
        ),
    ];
    assert_eq!(cases.len() + 2, h.len(), "every fixture column is compared");
    for (name, got) in cases {
        assert_rel(name, &got, &col(&h, &rows, name), 1e-6);
    }
}

// ---------------------------------------------------------------- f–I machinery

/// The 6 fixture units with the parameters the full 800-unit Watanabe pool gives them.
fn fi_params(ctx: &Ctx) -> NerlabTensors {
    let rt = watanabe_rt(800);
    let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default()).unwrap();
    NerlabTensors::new(ctx, &p.select(&FI_UNITS).unwrap()).unwrap()
}

/// One IClamp protocol rollout (step 100–1100 ms at the soma, v0 = −67 mV, MyoGen's protocol) of
/// `amps` `[rows][units]` nA; returns the spike times (ms) per row and unit, or only the count
/// of spikes at t ≥ 100 ms when `times` is false (no per-step read-back).
fn fi_rollout(
    ctx: &Ctx,
    params: &NerlabTensors,
    amps: &[Vec<f64>],
    dt_ms: f64,
    times: bool,
) -> Vec<Vec<Vec<f64>>> {
    let rows = amps.len();
    let n = params.n_units();
    let model = Nerlab::new(params, dt_ms * 1e-3, SpikeMode::Hard).unwrap();
    let i_on = ctx.tensor(amps.iter().flatten().cloned().collect(), [rows, n]);
    let i_off = ctx.zeros([1, 1]);
    let g0 = ctx.zeros([1, 1]);
    let mut s = model.initial_state(ctx, rows, V_INIT_MV);
    let n_steps = (1100.0 / dt_ms).round() as usize;
    let mut out = vec![vec![Vec::new(); n]; rows];
    let mut chunk: Vec<Tensor<2>> = Vec::new();
    let mut count = ctx.zeros([rows, n]);
    let mut chunk_start = 0;
    let flush = |chunk: &mut Vec<Tensor<2>>, start: usize, out: &mut Vec<Vec<Vec<f64>>>| {
        if chunk.is_empty() {
            return;
        }
        let len = chunk.len();
        let v = to_vec_f64(Tensor::cat(std::mem::take(chunk), 0));
        for k in 0..len {
            for r in 0..rows {
                for u in 0..n {
                    if v[(k * rows + r) * n + u] > 0.5 {
                        out[r][u].push((start + k + 1) as f64 * dt_ms);
                    }
                }
            }
        }
    };
    for k in 0..n_steps {
        let t_mid = (k as f64 + 0.5) * dt_ms;
        let i = if (100.0..1100.0).contains(&t_mid) {
            i_on.clone()
        } else {
            i_off.clone()
        };
        s = model.step(&s, i, g0.clone(), E_SYN_EXC_MV);
        if times {
            chunk.push(s.spikes.clone());
            if chunk.len() == 1000 {
                flush(&mut chunk, chunk_start, &mut out);
                chunk_start = k + 1;
            }
        } else if (k + 1) as f64 * dt_ms >= 100.0 - 1e-9 {
            count = count + s.spikes.clone();
        }
    }
    s.check_finite(n_steps).unwrap();
    if times {
        flush(&mut chunk, chunk_start, &mut out);
    } else {
        let c = to_vec_f64(count);
        for r in 0..rows {
            for u in 0..n {
                out[r][u] = vec![f64::NAN; c[r * n + u].round() as usize];
            }
        }
    }
    out
}

/// `|x| <= tol`, false for NaN.
fn within(x: f64, tol: f64) -> bool {
    x.abs() <= tol
}

/// `1000 / mean ISI` of the spikes in [600, 1100) ms (the fixture's `rate_invmeanisi_last500_hz`).
/// Rheobase tolerance (relative).
const RHEOBASE_REL_TOL: f64 = 0.005;

fn rate_last500(spikes: &[f64]) -> Option<f64> {
    let last: Vec<f64> = spikes
        .iter()
        .cloned()
        .filter(|t| *t >= 600.0 - 1e-9)
        .collect();
    (last.len() >= 2).then(|| 1000.0 * (last.len() - 1) as f64 / (last[last.len() - 1] - last[0]))
}

/// Rheobase by bisection on the batch axis, within 0.5 % of MyoGen's (measured: ≤ 0.03 %); the
/// final bracket is narrower than the tolerance, so the check can fail.
#[test]
fn rheobase_matches_myogen_within_half_a_percent() {
    let ctx = Ctx::cpu();
    let params = fi_params(&ctx);
    let meta: serde_json::Value = serde_json::from_str(&fixture("fi_meta.json")).unwrap();
    // bisection on the batch axis: B interior amplitudes per unit per round, 3 rounds (17× each)
    const B: usize = 16;
    let (mut lo, mut hi) = (vec![0.0f64; 6], vec![64.0f64; 6]);
    for round in 0..3 {
        let amps: Vec<Vec<f64>> = (0..=B)
            .map(|j| {
                (0..6)
                    .map(|u| {
                        if j == B {
                            hi[u]
                        } else {
                            lo[u] + (hi[u] - lo[u]) * (j + 1) as f64 / (B + 1) as f64
                        }
                    })
                    .collect()
            })
            .collect();
        let counts = fi_rollout(&ctx, &params, &amps, 0.1, false);
        for u in 0..6 {
            assert!(
                !counts[B][u].is_empty(),
                "round {round}: unit {} silent at the upper bracket {}",
                FI_UNITS[u],
                hi[u]
            );
            let first = (0..B).find(|&j| !counts[j][u].is_empty());
            let (l, h) = match first {
                Some(0) => (lo[u], amps[0][u]),
                Some(j) => (amps[j - 1][u], amps[j][u]),
                None => (amps[B - 1][u], hi[u]),
            };
            lo[u] = l;
            hi[u] = h;
        }
    }
    for (u, &unit) in FI_UNITS.iter().enumerate() {
        let want = meta["rheobase"]["0.1"][unit.to_string()]["rheobase_nA"]
            .as_f64()
            .unwrap();
        let got = 0.5 * (lo[u] + hi[u]);
        let rel = (got - want) / want;
        println!(
            "unit {unit}: rheobase {got:.4} nA in [{:.4}, {:.4}] vs MyoGen {want:.4} ({:+.2} %)",
            lo[u],
            hi[u],
            100.0 * rel
        );
        assert!(
            0.5 * (hi[u] - lo[u]) <= 0.5 * RHEOBASE_REL_TOL * want,
            "unit {unit}: bracket [{}, {}] too wide for the tolerance",
            lo[u],
            hi[u]
        );
        assert!(
            rel.abs() <= RHEOBASE_REL_TOL,
            "unit {unit}: rheobase {got} vs {want} ({:+.3} %)",
            100.0 * rel
        );
    }
}

/// Steady rates at the fixture amplitudes. At dt = 0.1 ms the discretised NERLab model fires
/// irregularly above ≈1.25× rheobase and is sensitive to round-off: in f64, a 1e-9 relative change
/// of the amplitude moves the last-500-ms rate by up to ±5 % (e.g. unit 0 at 4× rheobase:
/// 38.2–40.8 Hz, MyoGen 40.2 Hz), so the fixture rate is one sample of a distribution (at dt =
/// 0.025 ms firing is regular and the runs agree with MyoGen to < 0.1 %). We therefore compare the
/// mean over an ensemble of 8 amplitudes within ±3.5e-5 relative of the fixture's (the batch axis):
/// within 3.4 % at dt = 0.1 ms (README's claim; measured worst 2.9 %) and 1 % at dt = 0.025 ms
/// (measured worst 0.05 %), relative, no absolute floor. First-spike latencies (before
/// the chaos has had time to act) are compared within 5 % or 0.3 ms, and subthreshold amplitudes
/// (0.95× rheobase) must stay silent.
#[test]
fn steady_rates_and_latencies_match_myogen_dt_0p1() {
    check_rates_and_latencies(0.1, 0.034);
}

#[test]
fn steady_rates_and_latencies_match_myogen_dt_0p025() {
    check_rates_and_latencies(0.025, 0.01);
}

/// `rate_rel_tol`: relative tolerance of the ensemble-mean steady rate.
fn check_rates_and_latencies(dt_ms: f64, rate_rel_tol: f64) {
    let ctx = Ctx::cpu();
    let params = fi_params(&ctx);
    let (h, rows) = csv("fi_summary.csv");
    let (unit, dt, mult, amp) = (
        col(&h, &rows, "unit"),
        col(&h, &rows, "dt_ms"),
        col(&h, &rows, "mult"),
        col(&h, &rows, "amp_nA"),
    );
    let (n_step, lat, rate) = (
        col(&h, &rows, "n_spikes_step"),
        col(&h, &rows, "first_spike_latency_ms"),
        col(&h, &rows, "rate_invmeanisi_last500_hz"),
    );
    let mults = [0.95, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0];
    const K: usize = 8;
    let find = |u: usize, m: f64| {
        (0..rows.len()).find(|&i| {
            unit[i] as usize == u && (dt[i] - dt_ms).abs() < 1e-9 && (mult[i] - m).abs() < 1e-9
        })
    };
    // units without fixture rows at this dt get no current (and are not compared)
    let mut amps = Vec::new();
    for &m in &mults {
        for k in 0..K {
            let eps = (k as f64 - 3.5) * 1e-5;
            amps.push(
                FI_UNITS
                    .iter()
                    .map(|&u| find(u, m).map_or(0.0, |i| amp[i] * (1.0 + eps)))
                    .collect::<Vec<f64>>(),
            );
        }
    }
    let sp = fi_rollout(&ctx, &params, &amps, dt_ms, true);
    println!(
        "dt {dt_ms} ms: rollout of {} x 6 units, {} steps",
        amps.len(),
        (1100.0 / dt_ms).round()
    );
    let mut worst_rate: f64 = 0.0;
    let mut fails = Vec::new();
    for (mi, &m) in mults.iter().enumerate() {
        for (u, &unit_id) in FI_UNITS.iter().enumerate() {
            let Some(i) = find(unit_id, m) else { continue };
            let runs: Vec<&Vec<f64>> = (0..K).map(|k| &sp[mi * K + k][u]).collect();
            if n_step[i] == 0.0 {
                let n: usize = runs.iter().map(|r| r.len()).sum();
                if n != 0 {
                    fails.push(format!("unit {unit_id} x{m}: {n} spikes, MyoGen none"));
                }
                continue;
            }
            let lat_got: Vec<f64> = runs
                .iter()
                .map(|r| r.first().map_or(f64::NAN, |t| t - 100.0))
                .collect();
            let lat_mean = lat_got.iter().sum::<f64>() / K as f64;
            if !within(lat_mean - lat[i], (0.05 * lat[i]).max(0.3)) {
                fails.push(format!(
                    "unit {unit_id} x{m}: latency {lat_mean:.2} ms vs {:.2}",
                    lat[i]
                ));
            }
            if rate[i].is_nan() {
                continue;
            }
            let rates: Vec<f64> = runs.iter().filter_map(|r| rate_last500(r)).collect();
            if rates.len() != K {
                fails.push(format!("unit {unit_id} x{m}: rate undefined in some runs"));
                continue;
            }
            let mean = rates.iter().sum::<f64>() / K as f64;
            let (mn, mx) = rates
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
            let err = mean - rate[i];
            println!(
                "unit {unit_id:3} x{m:4}: rate {mean:7.3} Hz (runs {mn:.2}..{mx:.2}) vs MyoGen {:7.3} ({:+.2} %), latency {lat_mean:.2} vs {:.2} ms",
                rate[i],
                100.0 * err / rate[i],
                lat[i]
            );
            worst_rate = worst_rate.max((err / rate[i]).abs());
            if !within(err, rate_rel_tol * rate[i]) {
                fails.push(format!(
                    "unit {unit_id} x{m}: rate {mean:.3} vs {:.3}",
                    rate[i]
                ));
            }
        }
    }
    println!(
        "dt {dt_ms} ms: worst relative rate error {:.2} %",
        100.0 * worst_rate
    );
    assert!(fails.is_empty(), "{fails:#?}");
}

/// Voltage traces (soma and dendrite, 0–150 ms: settling from −67 mV and the first 50 ms of the
/// 2× rheobase step) of units 0 and 799 at dt 0.1 and 0.025 ms. In f64 the integration scheme is
/// NEURON's, so the traces agree to 1e-6 mV (measured ≤ 6e-7 mV, 5e-9 mV before the spikes). In
/// f32 the steep upstroke amplifies round-off: measured ≤ 2.4e-5 mV before the step and ≤ 0.14 mV
/// overall (at spike peaks); checked: ≤ 1e-3 mV before the step, ≤ 1 mV overall, and the same
/// +50 mV crossing times.
#[test]
fn voltage_traces_match_neuron() {
    let (h, rows) = csv("fi_vtrace_subset.csv");
    let (unit, dtc, amp, t, vs_ref, vd_ref) = (
        col(&h, &rows, "unit"),
        col(&h, &rows, "dt_ms"),
        col(&h, &rows, "amp_nA"),
        col(&h, &rows, "t_ms"),
        col(&h, &rows, "v_soma_mV"),
        col(&h, &rows, "v_dend_mV"),
    );
    for (ctx, tol_mv, label) in [
        (Ctx::cpu().f64(), 1e-6, "f64"),
        (Ctx::cpu(), f64::NAN, "f32"),
    ] {
        let rt = watanabe_rt(800);
        let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default()).unwrap();
        let params = NerlabTensors::new(&ctx, &p.select(&[0, 799]).unwrap()).unwrap();
        for dt_ms in [0.1, 0.025] {
            let sel: Vec<usize> = (0..rows.len())
                .filter(|&i| (dtc[i] - dt_ms).abs() < 1e-12)
                .collect();
            let amps: Vec<f64> = [0.0, 799.0]
                .iter()
                .map(|u| amp[*sel.iter().find(|&&i| unit[i] == *u).unwrap()])
                .collect();
            let model = Nerlab::new(&params, dt_ms * 1e-3, SpikeMode::Hard).unwrap();
            let i_on = ctx.tensor(amps, [1, 2]);
            let mut s = model.initial_state(&ctx, 1, V_INIT_MV);
            let n_steps = (150.0 / dt_ms).round() as usize;
            let mut vs = vec![to_vec_f64(s.v_soma_mv.clone())];
            let mut vd = vec![to_vec_f64(s.v_dend_mv.clone())];
            for k in 0..n_steps {
                let t_mid = (k as f64 + 0.5) * dt_ms;
                let i = if t_mid >= 100.0 {
                    i_on.clone()
                } else {
                    ctx.zeros([1, 1])
                };
                s = model.step(&s, i, ctx.zeros([1, 1]), E_SYN_EXC_MV);
                vs.push(to_vec_f64(s.v_soma_mv.clone()));
                vd.push(to_vec_f64(s.v_dend_mv.clone()));
            }
            for (u, uid) in [(0usize, 0.0), (1, 799.0)] {
                let (mut e_all, mut e_pre) = (0.0f64, 0.0f64);
                let (mut cross_ref, mut cross_got) = (Vec::new(), Vec::new());
                let mut prev: Option<(f64, f64)> = None;
                for &i in sel.iter().filter(|&&i| unit[i] == uid) {
                    let k = (t[i] / dt_ms).round() as usize;
                    let e = (vs[k][u] - vs_ref[i])
                        .abs()
                        .max((vd[k][u] - vd_ref[i]).abs());
                    e_all = e_all.max(e);
                    if t[i] <= 100.0 {
                        e_pre = e_pre.max(e);
                    }
                    if let Some((pr, pg)) = prev {
                        if pr <= 50.0 && vs_ref[i] > 50.0 {
                            cross_ref.push(t[i]);
                        }
                        if pg <= 50.0 && vs[k][u] > 50.0 {
                            cross_got.push(t[i]);
                        }
                    }
                    prev = Some((vs_ref[i], vs[k][u]));
                }
                println!(
                    "{label} dt {dt_ms} unit {uid}: max |dv| {e_all:.3e} mV over 0-150 ms ({e_pre:.3e} before the step); 50-mV crossings {cross_got:?} vs {cross_ref:?}"
                );
                if tol_mv.is_finite() {
                    assert!(e_all <= tol_mv, "{label} dt {dt_ms} unit {uid}: {e_all}");
                } else {
                    assert!(
                        e_pre <= 1e-3,
                        "{label} dt {dt_ms} unit {uid}: pre-step error {e_pre}"
                    );
                    assert!(e_all <= 1.0, "{label} dt {dt_ms} unit {uid}: error {e_all}");
                    assert_eq!(
                        cross_got.len(),
                        cross_ref.len(),
                        "{label} dt {dt_ms} unit {uid}"
                    );
                    for (a, b) in cross_got.iter().zip(&cross_ref) {
                        assert!(
                            (a - b).abs() <= 0.1 + 1e-9,
                            "{label} dt {dt_ms} unit {uid}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- stage and bad input

fn stage_sim(
    ctx: &Ctx,
    g_s: Vec<f64>,
    n_steps: usize,
    dt_s: f64,
) -> myodiff::Result<myodiff::kernel::Rollout> {
    let rt = watanabe_rt(800);
    let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())?.select(&[0, 799])?;
    let pool = NerlabPool::new(NerlabTensors::new(ctx, &p)?, SpikeMode::Hard).with_voltage_output();
    let mut sim = Simulation::new(ctx.clone(), 1, dt_s, n_steps)?;
    sim.add_stage(pool).record(&[nerlab::V_SOMA_V]);
    let trace = ctx.tensor(
        g_s.iter().cycle().take(n_steps * 2).cloned().collect(),
        [n_steps, 1, 2],
    );
    sim.add_input(BufferSpec::new(nerlab::SYN_CONDUCTANCE_S, &[2], "S"), trace)?;
    sim.run_path(ExecPath::Tape)
}

#[test]
fn pool_stage_fires_under_synaptic_conductance_and_reports_volts() {
    let ctx = Ctx::cpu();
    // 1 µS tonic excitatory conductance (E = +70 mV) drives unit 0 (rheobase ≈ 4.9 nA), not unit 799
    let r = stage_sim(&ctx, vec![1e-6, 1e-6], 3000, 1e-4).unwrap();
    let res = r.result(0).unwrap();
    let n0 = res.spike_times_s[0].len();
    let n799 = res.spike_times_s[1].len();
    println!("spikes in 300 ms: unit 0 {n0}, unit 799 {n799}");
    assert!(n0 >= 2 && n799 == 0, "{n0} {n799}");
    let v = to_vec_f64(r.trace(nerlab::V_SOMA_V).unwrap());
    assert!(
        (v[0] - V_INIT_MV * 1e-3).abs() < 0.02,
        "v_soma_v is in volts: {}",
        v[0]
    );
    assert!(v.iter().all(|x| x.abs() < 0.2));
}

#[test]
fn bad_input_gives_typed_errors() {
    let ctx = Ctx::cpu();
    // NaN conductance -> non-finite state, reported with the step
    match stage_sim(&ctx, vec![f64::NAN, 0.0], 50, 1e-4) {
        Err(Error::NonFinite { buffer, .. }) => assert!(
            buffer.contains("nerlab") || buffer.contains("spikes"),
            "{buffer}"
        ),
        Err(Error::InvalidParameter { field, .. }) => {
            assert!(field.contains("syn_conductance_s"), "{field}")
        }
        other => panic!("expected a typed error, got {:?}", other.map(|_| ())),
    }
    // negative conductance
    match stage_sim(&ctx, vec![1e-7, -1e-7], 50, 1e-4) {
        Err(Error::InvalidParameter { field, .. }) => assert!(
            field.contains("syn_conductance_s") && field.contains("unit 1"),
            "{field}"
        ),
        other => panic!("expected InvalidParameter, got {:?}", other.map(|_| ())),
    }
    // dt too large / invalid
    assert!(matches!(
        stage_sim(&ctx, vec![0.0, 0.0], 10, 1e-3),
        Err(Error::UnstableTimeStep { .. })
    ));
    let params = fi_params(&ctx);
    for dt in [0.0, -1e-4, f64::NAN, 5e-4] {
        assert!(
            matches!(
                Nerlab::new(&params, dt, SpikeMode::Hard),
                Err(Error::UnstableTimeStep { .. })
            ),
            "{dt}"
        );
    }
    // direct step inputs
    let bad_i = ctx.tensor(vec![1.0, f64::NAN], [1, 2]);
    let ok_g = ctx.zeros([1, 2]);
    assert!(
        matches!(Nerlab::validate_inputs(&bad_i, &ok_g), Err(Error::InvalidParameter { ref field, .. }) if field == "i_inj_na[1]")
    );
    let neg_g = ctx.tensor(vec![0.0, -1.0], [1, 2]);
    assert!(
        matches!(Nerlab::validate_inputs(&ctx.zeros([1, 2]), &neg_g), Err(Error::InvalidParameter { ref field, .. }) if field == "g_syn_us[1]")
    );
    // an exploding state is reported with variable, step and unit
    let model = Nerlab::new(&params, 1e-4, SpikeMode::Hard).unwrap();
    let s = model.initial_state(&ctx, 1, 0.0);
    let huge = ctx.tensor(vec![0.0, 0.0, f64::INFINITY, 0.0, 0.0, 0.0], [1, 6]);
    let s2 = model.step(&s, huge, ctx.zeros([1, 1]), E_SYN_EXC_MV);
    match s2.check_finite(7) {
        Err(Error::NonFinite { step, unit, .. }) => assert_eq!((step, unit), (7, 2)),
        other => panic!("{other:?}"),
    }
    // bad parameters
    assert!(
        NerlabParams::from_thresholds(
            &[0.5],
            NerlabConstants {
                ra_ohm_cm: 0.0,
                ..Default::default()
            }
        )
        .is_err()
    );
    assert!(matches!(
        NerlabParams::from_thresholds(&[0.2, 0.4], NerlabConstants::default())
            .unwrap()
            .select(&[2]),
        Err(Error::InvalidParameter { .. })
    ));
}

// ---------------------------------------------------------------- differentiability

/// A non-trivial state of 3 units (one mid-upstroke near the threshold, one in the AHP, one near rest).
fn probe_state(ctx: &Ctx, model: &Nerlab) -> NerlabState {
    let mut s = model.initial_state(ctx, 2, 0.0);
    s.v_soma_mv = ctx.tensor(vec![47.0, -3.0, 2.0, 44.0, 20.0, 0.5], [2, 3]);
    s.v_dend_mv = ctx.tensor(vec![5.0, 1.0, 3.0, 4.5, 6.0, 0.2], [2, 3]);
    s.m = ctx.tensor(vec![0.6, 0.05, 0.1, 0.55, 0.3, 0.08], [2, 3]);
    s.h = ctx.tensor(vec![0.4, 0.5, 0.6, 0.45, 0.5, 0.6], [2, 3]);
    s.p = ctx.tensor(vec![0.5, 0.1, 0.2, 0.4, 0.3, 0.15], [2, 3]);
    s.n = ctx.tensor(vec![0.3, 0.5, 0.2, 0.35, 0.4, 0.25], [2, 3]);
    s.r = ctx.tensor(vec![0.1, 0.4, 0.05, 0.15, 0.2, 0.05], [2, 3]);
    s.l = ctx.tensor(vec![0.3, 0.9, 0.1, 0.5, 0.6, 0.05], [2, 3]);
    s
}

/// Loss of one step as a function of (input current scale, gnabar scale):
/// `Σ w·(v_s, v_d, m, h, p, n, r, L[, spikes])` with fixed weights.
fn step_loss(ctx: &Ctx, mode: SpikeMode, theta: &[Tensor<1>; 2], with_spikes: bool) -> Tensor<1> {
    let rt = watanabe_rt(800);
    let p = NerlabParams::from_thresholds(&rt.rt, NerlabConstants::default())
        .unwrap()
        .select(&[0, 400, 799])
        .unwrap();
    let mut params = NerlabTensors::new(ctx, &p).unwrap();
    params.gnabar = params.gnabar.clone() * theta[1].clone().reshape([1, 1]);
    let model = Nerlab::new(&params, 1e-4, mode).unwrap();
    let s = probe_state(ctx, &model);
    let i_inj = ctx.tensor(vec![20.0, 5.0, 40.0, 8.0, 30.0, 60.0], [2, 3])
        * theta[0].clone().reshape([1, 1]);
    let g_syn = ctx.tensor(vec![0.1, 0.0, 0.3, 0.2, 0.05, 0.0], [2, 3]);
    let n = model.step(&s, i_inj, g_syn, E_SYN_EXC_MV);
    let mut terms = vec![
        n.v_soma_mv * 0.01,
        n.v_dend_mv * 0.1,
        n.m,
        n.h * 0.7,
        n.p * 1.3,
        n.n * 0.9,
        n.r * 2.0,
        n.l * 1.5,
    ];
    if with_spikes {
        terms.push(n.spikes * 3.0);
    }
    terms
        .into_iter()
        .map(|t| t.sum())
        .reduce(|a, b| a + b)
        .unwrap()
}

fn check_step_gradient(mode: SpikeMode, with_spikes: bool) {
    let x0 = vec![1.0, 1.0];
    let actx = Ctx::cpu().f64().autodiff();
    let theta = [
        actx.scalar(x0[0]).require_grad(),
        actx.scalar(x0[1]).require_grad(),
    ];
    let loss = step_loss(&actx, mode, &theta, with_spikes);
    let grads = loss.backward();
    let analytic: Vec<f64> = theta
        .iter()
        .map(|t| scalar_f64(t.grad(&grads).unwrap()))
        .collect();
    let ctx = Ctx::cpu().f64();
    let numeric = central_differences(
        &mut |x: &[f64]| {
            Ok(scalar_f64(step_loss(
                &ctx,
                mode,
                &[ctx.scalar(x[0]), ctx.scalar(x[1])],
                with_spikes,
            )))
        },
        &x0,
        &[1e-5, 1e-5],
    )
    .unwrap();
    println!("{mode:?}: autodiff {analytic:?} vs central FD {numeric:?}");
    let c = GradCheck::compare(analytic, numeric).unwrap();
    c.check(1e-4, 0.9999).unwrap();
}

#[test]
fn one_step_gradient_matches_finite_differences_rate_mode() {
    check_step_gradient(SpikeMode::Rate, true);
}

#[test]
fn one_step_gradient_matches_finite_differences_surrogate_mode() {
    // the surrogate's forward is the hard spike (zero FD derivative), so the spike term is left out
    check_step_gradient(SpikeMode::Surrogate, false);
}

#[test]
fn hard_and_surrogate_forward_are_identical() {
    let ctx = Ctx::cpu().f64();
    let theta = [ctx.scalar(1.0), ctx.scalar(1.0)];
    let a = scalar_f64(step_loss(&ctx, SpikeMode::Hard, &theta, true));
    let b = scalar_f64(step_loss(&ctx, SpikeMode::Surrogate, &theta, true));
    assert_eq!(a.to_bits(), b.to_bits());
}
