//! MyoGen 0.12 `ForceModel` emulation vs reference fixture 2 (tests/fixtures, copied from the
//! MyoGen reference run; README §2): P_i, T_i, per-spike gains, and the 2048 Hz force traces.

use myodiff::muscle::{MyogenForceModel, MyogenForceReadout, myogen_compat::bin_index};

const FS: f64 = 2048.0;
const DT: f64 = 1e-4;
const N_BINS: usize = 20_000;
/// The claimed accuracy of the emulation (README: matches to 4e-16; asserted at 1e-12).
const REL: f64 = 1e-12;

/// Reads a numeric CSV with a header row: (column names, rows).
fn read_csv(name: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .map(|x| x.trim().parse::<f64>().unwrap())
                .collect()
        })
        .collect();
    (header, rows)
}

fn col(header: &[String], rows: &[Vec<f64>], name: &str) -> Vec<f64> {
    let j = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rows.iter().map(|r| r[j]).collect()
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn model_n800() -> MyogenForceModel {
    let (h, r) = read_csv("rt_n800_combined.csv");
    MyogenForceModel::new(&col(&h, &r, "rt"), FS, 90.0, 3.0).unwrap()
}

/// The fixture's spike plan, read from force_hand_spikes.csv: bins per unit.
/// (unit, bin, ipi used by MyoGen's gain, gain) per fixture spike.
type SpikeRow = (usize, usize, f64, f64);

fn hand_spikes() -> (Vec<Vec<usize>>, Vec<SpikeRow>) {
    let (h, r) = read_csv("force_hand_spikes.csv");
    let units = col(&h, &r, "unit_index");
    let times = col(&h, &r, "spike_time_s");
    let bins = col(&h, &r, "bin_index_0p1ms");
    let ipi = col(&h, &r, "ipi_bins_used_by_gain");
    let gain = col(&h, &r, "gain");
    let mut trains = vec![Vec::new(); 800];
    let mut rows = Vec::new();
    for k in 0..units.len() {
        let u = units[k] as usize;
        let b = bin_index(times[k], 0.0, DT);
        assert_eq!(b, bins[k] as usize, "binning of spike time {}", times[k]);
        trains[u].push(b);
        rows.push((u, b, ipi[k], gain[k]));
    }
    for t in &mut trains {
        t.sort_unstable();
    }
    (trains, rows)
}

#[test]
fn p_and_t_match_n800_combined() {
    let (h, r) = read_csv("rt_n800_combined.csv");
    let m = MyogenForceModel::new(&col(&h, &r, "rt"), FS, 90.0, 3.0).unwrap();
    let p = col(&h, &r, "P_peak_twitch");
    let t = col(&h, &r, "T_contraction_samples_at_2048Hz");
    let len = col(&h, &r, "twitch_len_samples");
    let mut worst: f64 = 0.0;
    for i in 0..800 {
        worst = worst
            .max(rel_err(m.p[i], p[i]))
            .max(rel_err(m.t_samples[i], t[i]));
        assert_eq!(
            m.twitches[i].len(),
            len[i] as usize,
            "twitch length of unit {i}"
        );
    }
    assert!(worst <= REL, "worst relative error {worst}");
    assert!(
        worst <= 1e-12,
        "P/T should be exact to round-off, worst {worst}"
    );
}

#[test]
fn p_and_t_match_n100_all_modes() {
    let (h, r) = read_csv("rt_n100_all_modes.csv");
    for mode in ["fuglevand", "deluca", "konstantin", "combined"] {
        let rt = col(&h, &r, &format!("rt_{mode}"));
        let m = MyogenForceModel::new(&rt, FS, 90.0, 3.0).unwrap();
        let p = col(&h, &r, &format!("P_{mode}"));
        let t = col(&h, &r, &format!("T_samples_{mode}"));
        for i in 0..100 {
            assert!(
                rel_err(m.p[i], p[i]) <= 1e-12,
                "{mode} P[{i}] {} vs {}",
                m.p[i],
                p[i]
            );
            assert!(
                rel_err(m.t_samples[i], t[i]) <= 1e-12,
                "{mode} T[{i}] {} vs {}",
                m.t_samples[i],
                t[i]
            );
        }
    }
}

#[test]
fn gains_and_ipi_match_fixture() {
    let m = model_n800();
    let (trains, rows) = hand_spikes();
    assert_eq!(rows.len(), 159);
    let mut worst: f64 = 0.0;
    for u in [0usize, 200, 400, 600, 799] {
        let ipi = MyogenForceModel::myogen_ipi_at_spikes(&trains[u], N_BINS);
        let g = m.gains_at_spikes(u, &trains[u], N_BINS);
        let expect: Vec<_> = rows.iter().filter(|r| r.0 == u).collect();
        assert_eq!(g.len(), expect.len());
        for (k, e) in expect.iter().enumerate() {
            assert_eq!(ipi[k] as f64, e.2, "ipi of unit {u} spike {k}");
            worst = worst.max(rel_err(g[k], e.3));
        }
    }
    assert!(worst <= REL, "worst gain relative error {worst}");
}

#[test]
fn ipi_quirk_next_bin_spike_gives_gain_one() {
    // a spike immediately followed by another: MyoGen's ipi is 0 → uint32 wrap → gain 1
    let m = model_n800();
    let ipi = MyogenForceModel::myogen_ipi_at_spikes(&[10, 11, 500], 1000);
    assert_eq!(ipi, vec![u32::MAX as u64, 1, 1]);
    let g = m.gains_at_spikes(0, &[10, 11, 500], 1000);
    assert_eq!(g[0], 1.0);
    assert!((g[1] - g[2]).abs() < 1e-15 && g[1] < 0.1);
}

fn check_trace(name: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name} length");
    let peak = want.iter().cloned().fold(0.0, f64::max);
    let mut worst: f64 = 0.0;
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        // relative error per sample; samples below 1e-9 of the peak only need to be tiny
        let err = if b.abs() > 1e-9 * peak {
            rel_err(*a, *b)
        } else {
            (a - b).abs() / peak
        };
        assert!(err <= REL, "{name}[{k}]: {a} vs {b} (rel err {err})");
        worst = worst.max(err);
    }
    eprintln!(
        "{name}: worst relative error {worst:.3e} over {} samples (peak {peak})",
        want.len()
    );
}

#[test]
fn force_traces_match_fixture() {
    let m = model_n800();
    let (trains, _) = hand_spikes();
    let (h, r) = read_csv("force_hand_trace.csv");
    assert_eq!(r.len(), 4096);
    let all = m.generate_force(&trains, N_BINS, DT).unwrap();
    check_trace("force_all5", &all, &col(&h, &r, "force_all5"));
    let time = col(&h, &r, "time_s");
    for u in [0usize, 200, 400, 600, 799] {
        let mut one = vec![Vec::new(); 800];
        one[u] = vec![1000];
        let f = m.generate_force(&one, N_BINS, DT).unwrap();
        let want = col(&h, &r, &format!("single_spike_u{u}"));
        check_trace(&format!("single_spike_u{u}"), &f, &want);
        // peak = P_i·g_i at T_i after the spike, as the README states
        let (kmax, fmax) = f
            .iter()
            .enumerate()
            .fold((0, 0.0), |a, (k, &v)| if v > a.1 { (k, v) } else { a });
        let (wmax, _) = want
            .iter()
            .enumerate()
            .fold((0, 0.0), |a, (k, &v)| if v > a.1 { (k, v) } else { a });
        assert_eq!(kmax, wmax, "peak sample of unit {u} at {} s", time[kmax]);
        let g = m.gains_at_spikes(u, &[1000], N_BINS)[0];
        assert!(
            rel_err(fmax, m.p[u] * g) < 2e-3,
            "peak {fmax} vs P·g {}",
            m.p[u] * g
        );
    }
}

#[test]
fn readout_runs_on_sim_grid() {
    use myodiff::kernel::{BufferSpec, Ctx, Simulation};
    let rt: Vec<f64> = (0..4)
        .map(|i| 0.01 * 10f64.powf(i as f64 * 2.0 / 3.0))
        .collect();
    let m = MyogenForceModel::new(&rt, FS, 90.0, 3.0).unwrap();
    let ctx = Ctx::cpu().f64();
    let n_t = 3000;
    let mut v = vec![0.0; n_t * 2 * 4];
    for t in [100usize, 900, 1700] {
        v[(t * 2 + 1) * 4 + 3] = 1.0; // batch 1, unit 3
    }
    let mut sim = Simulation::new(ctx.clone(), 2, DT, n_t).unwrap();
    sim.add_input(
        BufferSpec::new("spikes", &[4], "1"),
        ctx.tensor(v, [n_t, 2, 4]),
    )
    .unwrap();
    sim.add_readout(MyogenForceReadout::new(m.clone(), 2.0).unwrap());
    let roll = sim.run().unwrap();
    let out = myodiff::kernel::to_vec_f64(roll.trace("force_myogen_n").unwrap());
    let mut spikes = vec![Vec::new(); 4];
    spikes[3] = vec![100, 900, 1700];
    let want = m.force_on_spike_grid(&spikes, n_t, DT).unwrap();
    for t in 0..n_t {
        assert_eq!(out[t * 2], 0.0);
        assert!((out[t * 2 + 1] - 2.0 * want[t]).abs() <= 1e-12 * (1.0 + want[t]));
    }
    assert!(want.iter().cloned().fold(0.0, f64::max) > 0.0);
}

#[test]
fn bad_inputs_are_typed_errors() {
    assert!(MyogenForceModel::new(&[], FS, 90.0, 3.0).is_err());
    assert!(MyogenForceModel::new(&[0.1, 1.0], FS, 90.0, 1.0).is_err());
    assert!(MyogenForceModel::new(&[0.1, 1.0], FS, -1.0, 3.0).is_err());
    assert!(MyogenForceModel::new(&[0.1, 1.0], 0.0, 90.0, 3.0).is_err());
    assert!(MyogenForceModel::new(&[0.0, 1.0], FS, 90.0, 3.0).is_err());
    assert!(MyogenForceModel::new(&[1.0, 1.0], FS, 90.0, 3.0).is_err());
    let m = MyogenForceModel::new(&[0.1, 1.0], FS, 90.0, 3.0).unwrap();
    let e = m
        .force_on_spike_grid(&[vec![], vec![]], 100, 0.0)
        .unwrap_err();
    assert!(e.to_string().contains("spike_dt_s"), "{e}");
    assert!(m.force_on_spike_grid(&[vec![]], 100, DT).is_err());
    assert!(
        m.force_on_spike_grid(&[vec![5, 2], vec![]], 100, DT)
            .is_err()
    );
}
