//! MUAP templates and electrode grids: differentiation modes, amplitude vs depth and electrode
//! distance, conduction velocity from the inter-channel delay, pool geometry, bad inputs.

use myodiff::Error;
use myodiff::emg::electrodes::{Differentiation, ElectrodeArray};
use myodiff::emg::muap::{MotorUnitGeometry, MuapModel, MuapTemplates, PoolGeometry};
use myodiff::emg::surface::{ConvMethod, SurfaceEmg};
use myodiff::kernel::{Ctx, to_vec_f64};
use rand::{Rng, SeedableRng, rngs::StdRng};

const DT: f64 = 1e-4;

fn unit(depth_m: f64, x_m: f64, z_nmj_m: f64, cv: f64) -> MotorUnitGeometry {
    MotorUnitGeometry {
        n_fibres: 200.0,
        depth_m,
        x_m,
        z_nmj_m,
        cv_m_s: cv,
        left_m: 40e-3,
        right_m: 50e-3,
    }
}

fn grid(rows: usize, cols: usize, mode: Differentiation) -> ElectrodeArray {
    ElectrodeArray::new(rows, cols, 8e-3, 1.5e-3, 0.0, 0.0, mode).unwrap()
}

#[test]
fn differential_modes_equal_differences_of_monopolar_channels() {
    let units = vec![
        unit(3e-3, 2e-3, -5e-3, 4.0),
        unit(8e-3, -6e-3, 4e-3, 3.2),
        unit(5e-3, 0.0, 0.0, 4.7),
    ];
    let model = MuapModel::default();
    let (rows, cols) = (5, 4);
    let mono = MuapTemplates::compute(
        &grid(rows, cols, Differentiation::Monopolar),
        &units,
        &model,
        DT,
        None,
    )
    .unwrap();
    assert_eq!((mono.rows, mono.cols), (rows, cols));
    // EMG of random spike trains, monopolar
    let (t_len, nu) = (600, units.len());
    let mut rng = StdRng::seed_from_u64(1);
    let s: Vec<f64> = (0..t_len * nu)
        .map(|_| if rng.random_bool(0.01) { 1.0 } else { 0.0 })
        .collect();
    let ctx = Ctx::cpu().f64();
    let run = |tp: &MuapTemplates| {
        to_vec_f64(
            SurfaceEmg::new(tp)
                .unwrap()
                .method(ConvMethod::Fft)
                .convolve(ctx.tensor(s.clone(), [t_len, 1, nu]), &ctx)
                .unwrap(),
        )
    };
    let ym_vec = run(&mono);
    let ym = &ym_vec;
    let m = move |t: usize, r: usize, c: usize| ym[t * rows * cols + r * cols + c];
    let scale = ym_vec.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(scale > 0.0);
    type Expect<'a> = Box<dyn Fn(usize, usize, usize) -> f64 + 'a>;
    let cases: Vec<(Differentiation, (usize, usize), Expect)> = vec![
        (
            Differentiation::BipolarLongitudinal,
            (rows - 1, cols),
            Box::new(move |t, r, c| m(t, r + 1, c) - m(t, r, c)),
        ),
        (
            Differentiation::BipolarTransversal,
            (rows, cols - 1),
            Box::new(move |t, r, c| m(t, r, c + 1) - m(t, r, c)),
        ),
        (
            Differentiation::Laplacian,
            (rows - 2, cols - 2),
            Box::new(move |t, r, c| {
                m(t, r, c + 1) + m(t, r + 2, c + 1) + m(t, r + 1, c) + m(t, r + 1, c + 2)
                    - 4.0 * m(t, r + 1, c + 1)
            }),
        ),
    ];
    for (mode, shape, expect) in cases {
        let g = grid(rows, cols, mode);
        assert_eq!(g.output_shape(), shape);
        let tp = MuapTemplates::compute(&g, &units, &model, DT, None).unwrap();
        assert_eq!((tp.rows, tp.cols), shape);
        let y = run(&tp);
        for t in 0..t_len {
            for r in 0..shape.0 {
                for c in 0..shape.1 {
                    let got = y[t * shape.0 * shape.1 + r * shape.1 + c];
                    let want = expect(t, r, c);
                    assert!(
                        (got - want).abs() <= 1e-11 * scale,
                        "{mode:?} t {t} ({r},{c}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn amplitude_decreases_with_depth_and_electrode_distance() {
    let model = MuapModel::default();
    let g = grid(5, 7, Differentiation::Monopolar);
    // depth: electrode (2, 3) is right above the units (x = 0)
    let depths = [1e-3, 2e-3, 4e-3, 8e-3, 16e-3];
    let units: Vec<_> = depths.iter().map(|&d| unit(d, 0.0, -20e-3, 4.0)).collect();
    let tp = MuapTemplates::compute(&g, &units, &model, DT, None).unwrap();
    let ch = 2 * 7 + 3;
    let p2p: Vec<f64> = (0..units.len()).map(|u| tp.peak_to_peak(u, ch)).collect();
    eprintln!("p2p vs depth {depths:?}: {p2p:?} V");
    for w in p2p.windows(2) {
        assert!(w[1] < w[0], "p2p vs depth not decreasing: {p2p:?}");
    }
    // a shallow unit: plausible surface-MUAP amplitude (200 fibres → tens of µV to mV)
    assert!(p2p[0] > 1e-5 && p2p[0] < 1e-2, "p2p at 1 mm = {} V", p2p[0]);
    // duration grows with depth: RMS width of the squared template
    let width = |u: usize| {
        let x = tp.channel(u, ch);
        let e: f64 = x.iter().map(|v| v * v).sum();
        let m: f64 = x
            .iter()
            .enumerate()
            .map(|(k, v)| k as f64 * v * v)
            .sum::<f64>()
            / e;
        (x.iter()
            .enumerate()
            .map(|(k, v)| (k as f64 - m).powi(2) * v * v)
            .sum::<f64>()
            / e)
            .sqrt()
    };
    assert!(width(4) > width(0), "deeper MUAP not broader");
    // transverse distance: unit at x = x of column 3, electrodes in columns 3, 4, 5, 6 of row 2
    let tp = MuapTemplates::compute(&g, &[unit(4e-3, 0.0, -20e-3, 4.0)], &model, DT, None).unwrap();
    let p: Vec<f64> = (3..7).map(|c| tp.peak_to_peak(0, 2 * 7 + c)).collect();
    eprintln!("p2p vs transverse distance 0, 8, 16, 24 mm: {p:?} V");
    for w in p.windows(2) {
        assert!(
            w[1] < w[0],
            "p2p vs transverse distance not decreasing: {p:?}"
        );
    }
    // amplitude scales with the number of fibres (linear)
    let mut big = unit(4e-3, 0.0, -20e-3, 4.0);
    big.n_fibres *= 3.0;
    let tb = MuapTemplates::compute(&g, &[big], &model, DT, None).unwrap();
    let r = tb.peak_to_peak(0, 2 * 7 + 3) / p[0];
    assert!((r - 3.0).abs() < 1e-9, "amplitude ratio {r}");
}

/// Delay (in samples) maximising the cross-correlation of `b` against `a` (b ≈ a shifted by
/// +delay), with parabolic interpolation around the peak.
fn xcorr_delay(a: &[f64], b: &[f64], max_lag: usize) -> f64 {
    let n = a.len();
    let xc = |lag: isize| -> f64 {
        (0..n)
            .filter_map(|i| {
                let j = i as isize + lag;
                (j >= 0 && (j as usize) < n).then(|| a[i] * b[j as usize])
            })
            .sum()
    };
    let lags: Vec<isize> = (-(max_lag as isize)..=max_lag as isize).collect();
    let vals: Vec<f64> = lags.iter().map(|&l| xc(l)).collect();
    let (imax, _) = vals
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        });
    assert!(
        imax > 0 && imax + 1 < vals.len(),
        "peak at the lag boundary"
    );
    let (y0, y1, y2) = (vals[imax - 1], vals[imax], vals[imax + 1]);
    lags[imax] as f64 + 0.5 * (y0 - y2) / (y0 - 2.0 * y1 + y2)
}

#[test]
fn conduction_velocity_is_the_inter_channel_delay_along_the_fibres() {
    let model = MuapModel::default();
    // one column of 13 electrodes along the fibres, IZ 70 mm before the first electrode,
    // fibres 200 mm long towards +z: pure propagation under the grid.
    let g = ElectrodeArray::new(
        13,
        1,
        8e-3,
        1.5e-3,
        0.0,
        0.0,
        Differentiation::BipolarLongitudinal,
    )
    .unwrap();
    for &cv in &[3.0, 4.0, 5.5] {
        let mut u = unit(3e-3, 0.0, -120e-3, cv);
        u.right_m = 250e-3;
        let tp = MuapTemplates::compute(&g, &[u], &model, DT, None).unwrap();
        let mut ests = Vec::new();
        for ch in 3..9 {
            let d = xcorr_delay(tp.channel(0, ch), tp.channel(0, ch + 1), 60);
            ests.push(8e-3 / (d * DT));
        }
        eprintln!("cv {cv} m/s: estimates {ests:?}");
        for est in &ests {
            assert!(
                (est - cv).abs() <= 0.10 * cv,
                "cv {cv} m/s: estimates {ests:?}"
            );
        }
    }
}

#[test]
fn pool_geometry_follows_size_order_and_seed() {
    let pg = PoolGeometry::default();
    let units = pg.units(100, 3).unwrap();
    assert_eq!(units.len(), 100);
    let total: f64 = units.iter().map(|u| u.n_fibres).sum();
    assert!((total - pg.total_fibres).abs() < 1e-6 * pg.total_fibres);
    for w in units.windows(2) {
        assert!(w[1].n_fibres > w[0].n_fibres);
        assert!(w[1].cv_m_s > w[0].cv_m_s);
    }
    let ratio = units[99].n_fibres / units[0].n_fibres;
    assert!((ratio - pg.size_ratio).abs() < 1e-9 * pg.size_ratio);
    for u in &units {
        assert!(u.depth_m >= pg.depth_min_m && u.depth_m <= pg.depth_max_m);
        assert!(u.x_m.abs() <= pg.x_half_width_m);
        assert!((u.z_nmj_m - pg.iz_z_m).abs() <= pg.iz_spread_m);
    }
    assert_eq!(units, pg.units(100, 3).unwrap());
    assert_ne!(units, pg.units(100, 4).unwrap());
    // from peak twitches: proportional
    let tw = pg.units_from_twitch(&[1.0, 2.0, 5.0], 0).unwrap();
    assert!((tw[2].n_fibres / tw[0].n_fibres - 5.0).abs() < 1e-12);
    // the automatic template length holds the whole MUAP (tail ≪ peak)
    let g = grid(3, 3, Differentiation::Monopolar);
    let tp = MuapTemplates::compute(&g, &units[..3], &MuapModel::default(), DT, None).unwrap();
    for u in 0..3 {
        for ch in 0..9 {
            let x = tp.channel(u, ch);
            let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(x[x.len() - 1].abs() <= 1e-6 * peak, "tail not negligible");
        }
    }
}

#[test]
fn gr08mm1305_reuses_the_recording_geometry() {
    let g = ElectrodeArray::gr08mm1305(Differentiation::Monopolar).unwrap();
    let rec = myodiff::io::recording::ElectrodeGrid::gr08mm1305();
    assert_eq!((g.rows, g.cols, g.ied_m), (rec.rows, rec.cols, rec.ied_m));
    assert_eq!(g.n_outputs(), 65);
    let u = PoolGeometry::default().units(2, 0).unwrap();
    let tp = MuapTemplates::compute(&g, &u, &MuapModel::default(), DT, Some(40)).unwrap();
    let t = tp.to_tensor(&Ctx::cpu().f64());
    assert_eq!(t.dims(), [2, 13, 5, 40]);
    let v = to_vec_f64(t);
    assert_eq!(
        &v[(65 + 2 * 5 + 3) * 40..(65 + 2 * 5 + 4) * 40],
        tp.channel(1, 2 * 5 + 3)
    );
    assert_eq!(g.recording_channel(0, 0), None);
    assert_eq!(g.recording_channel(1, 0), Some(0));
    let (z0, _) = g.electrode_zx_m(0, 0);
    let (z1, _) = g.electrode_zx_m(12, 4);
    assert!((z1 - z0 - 12.0 * 8e-3).abs() < 1e-12);
    let bl = ElectrodeArray::gr08mm1305(Differentiation::BipolarLongitudinal).unwrap();
    assert_eq!(bl.output_shape(), (12, 5));
}

#[test]
fn bad_geometry_gives_typed_errors() {
    let field_of = |e: Error| match e {
        Error::InvalidParameter { field, .. } => field,
        other => panic!("expected InvalidParameter, got {other:?}"),
    };
    let m = Differentiation::Monopolar;
    let new = |r, c, d, rad, z| ElectrodeArray::new(r, c, d, rad, z, 0.0, m);
    assert_eq!(field_of(new(0, 5, 8e-3, 1e-3, 0.0).unwrap_err()), "rows");
    assert_eq!(field_of(new(5, 0, 8e-3, 1e-3, 0.0).unwrap_err()), "cols");
    assert_eq!(
        field_of(new(5, 5, -8e-3, 1e-3, 0.0).unwrap_err()),
        "inter_electrode_distance_m"
    );
    assert_eq!(
        field_of(new(5, 5, f64::NAN, 1e-3, 0.0).unwrap_err()),
        "inter_electrode_distance_m"
    );
    assert_eq!(
        field_of(new(5, 5, 8e-3, -1e-3, 0.0).unwrap_err()),
        "electrode_radius_m"
    );
    assert_eq!(
        field_of(new(5, 5, 8e-3, 1e-3, f64::NAN).unwrap_err()),
        "centre_z_m"
    );
    assert_eq!(
        field_of(
            ElectrodeArray::new(2, 5, 8e-3, 1e-3, 0.0, 0.0, Differentiation::Laplacian)
                .unwrap_err()
        ),
        "electrode grid"
    );
    assert!("tripolar".parse::<Differentiation>().is_err());
    let g = grid(2, 2, m);
    let model = MuapModel::default();
    let mut u = unit(3e-3, 0.0, 0.0, 4.0);
    u.cv_m_s = 0.0;
    assert_eq!(
        field_of(MuapTemplates::compute(&g, &[u], &model, DT, None).unwrap_err()),
        "units[0].cv_m_s"
    );
    let mut u = unit(3e-3, 0.0, 0.0, 4.0);
    u.depth_m = f64::NAN;
    assert_eq!(
        field_of(
            MuapTemplates::compute(&g, std::slice::from_ref(&u), &model, DT, None).unwrap_err()
        ),
        "units[0].depth_m"
    );
    assert_eq!(
        field_of(MuapTemplates::compute(&g, &[], &model, DT, None).unwrap_err()),
        "n_units"
    );
    let u = unit(3e-3, 0.0, 0.0, 4.0);
    assert_eq!(
        field_of(
            MuapTemplates::compute(&g, std::slice::from_ref(&u), &model, 0.0, None).unwrap_err()
        ),
        "dt_s"
    );
    let mut bad = model.clone();
    bad.conductor.sigma_radial_s_per_m = -0.1;
    assert_eq!(
        field_of(MuapTemplates::compute(&g, &[u], &bad, DT, None).unwrap_err()),
        "sigma_radial_s_per_m"
    );
    let pg = PoolGeometry {
        depth_max_m: -1.0,
        ..PoolGeometry::default()
    };
    assert_eq!(field_of(pg.units(10, 0).unwrap_err()), "depth_max_m");
    assert_eq!(
        field_of(PoolGeometry::default().units(0, 0).unwrap_err()),
        "n_units"
    );
    assert_eq!(
        field_of(
            PoolGeometry::default()
                .units_from_twitch(&[1.0, f64::NAN], 0)
                .unwrap_err()
        ),
        "peak_twitch[1]"
    );
}

/// Independent reference of the monopolar single-fibre potential of a point electrode: the
/// module's equation `φ(t) = image·N_f·σ_i a²/(4σ_r) ∫ J(z, t) g'(z_e − z) dz` over the fibre,
/// `J = −sign(z − z_i)·V'(v t − |z − z_i|)`, `V'(ζ) = A(3ζ² − λζ³)e^{−λζ}` written out here, and
/// `g'(w) = −w (σ_z/σ_r·ρ² + w²)^{−3/2}`, integrated by 5-point Gauss–Legendre on 20 µm panels
/// over the support of `J` on each side of the NMJ (instead of the library's midpoint rule on a
/// V' table with spacing δ = v·dt/q ≤ 0.2 mm).
fn reference_potential(u: &MotorUnitGeometry, model: &MuapModel, ze: f64, xe: f64, t: f64) -> f64 {
    let vc = &model.conductor;
    let (a_iap, lam) = (model.iap.amplitude_v_per_m3, model.iap.lambda_per_m);
    let dv = |zeta: f64| {
        if zeta <= 0.0 {
            0.0
        } else {
            a_iap * (3.0 * zeta * zeta - lam * zeta.powi(3)) * (-lam * zeta).exp()
        }
    };
    let h = u.depth_m + vc.layer_depth_factor * (vc.fat_m + vc.skin_m);
    let a_rho2 = vc.sigma_long_s_per_m / vc.sigma_radial_s_per_m * ((xe - u.x_m).powi(2) + h * h);
    let gp = |w: f64| -w / (a_rho2 + w * w).powf(1.5);
    let zi = u.z_nmj_m;
    let vt = u.cv_m_s * t;
    let integrand = |z: f64| {
        let d = z - zi;
        let j = -d.signum() * dv(vt - d.abs());
        j * gp(ze - z)
    };
    // Panels: [z_i − L1, z_i] and [z_i, z_i + L2], each split where the wave front is.
    let (x5, w5) = (
        [
            0.0,
            0.538_469_310_105_683_1,
            -0.538_469_310_105_683_1,
            0.906_179_845_938_664,
            -0.906_179_845_938_664,
        ],
        [
            0.568_888_888_888_888_9,
            0.478_628_670_499_366_5,
            0.478_628_670_499_366_5,
            0.236_926_885_056_189_1,
            0.236_926_885_056_189_1,
        ],
    );
    // Support of J on each side: |z − z_i| ∈ [max(0, vt − 25/λ), min(vt, L)] (V' vanishes
    // ahead of the front and is below 1e-7 of its peak 25/λ behind it).
    let ext = 25.0 / lam;
    let mut total = 0.0;
    for (side, len) in [(-1.0, u.left_m), (1.0, u.right_m)] {
        let (d0, d1) = ((vt - ext).max(0.0), vt.min(len));
        if d1 <= d0 {
            continue;
        }
        let n = ((d1 - d0) / 20e-6).ceil().max(1.0) as usize;
        let hp = (d1 - d0) / n as f64;
        for k in 0..n {
            let mid = d0 + (k as f64 + 0.5) * hp;
            for (x, w) in x5.iter().zip(w5) {
                total += w * 0.5 * hp * integrand(zi + side * (mid + 0.5 * hp * x));
            }
        }
    }
    let image = if vc.half_space { 2.0 } else { 1.0 };
    image * u.n_fibres * vc.sigma_intra_s_per_m * vc.fibre_radius_m.powi(2)
        / (4.0 * vc.sigma_radial_s_per_m)
        * total
}

/// Templates (point electrodes, monopolar) against the independent quadrature: the worst error
/// over every tap and channel, relative to the channel's peak, is small at δ = 0.2 mm and falls
/// about 4× when δ halves (the midpoint rule's O(δ²)), so the agreement is the discretisation's
/// and not an accident.
#[test]
fn templates_match_an_independent_quadrature_of_the_single_fibre_potential() {
    let units = [unit(4e-3, 3e-3, 2e-3, 4.0), unit(9e-3, -5e-3, -6e-3, 4.0)];
    let model = MuapModel::default();
    let g = ElectrodeArray::new(3, 2, 8e-3, 0.0, 0.0, 0.0, Differentiation::Monopolar).unwrap();
    let mut worst_by_dt = Vec::new();
    // v·dt = 0.4 mm (q = 2, δ = 0.2 mm) and 0.1 mm (q = 1, δ = 0.1 mm).
    for dt in [1e-4, 2.5e-5] {
        let tp = MuapTemplates::compute(&g, &units, &model, dt, None).unwrap();
        let mut worst: f64 = 0.0;
        for (ui, u) in units.iter().enumerate() {
            for r in 0..g.rows {
                for c in 0..g.cols {
                    let (ze, xe) = g.electrode_zx_m(r, c);
                    let got = tp.channel(ui, r * g.cols + c);
                    let want: Vec<f64> = (0..tp.n_taps)
                        .map(|n| reference_potential(u, &model, ze, xe, n as f64 * dt))
                        .collect();
                    let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    assert!(peak > 1e-6, "a visible MUAP: peak {peak} V");
                    let err = got
                        .iter()
                        .zip(&want)
                        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                    worst = worst.max(err / peak);
                }
            }
        }
        eprintln!("dt {dt:e} s: worst |template − reference| / peak = {worst:.3e}");
        worst_by_dt.push(worst);
    }
    assert!(worst_by_dt[0] < 1e-2, "δ = 0.2 mm: {:.3e}", worst_by_dt[0]);
    let ratio = worst_by_dt[0] / worst_by_dt[1];
    assert!(
        (3.0..5.5).contains(&ratio),
        "halving δ should divide the error by ≈ 4: {worst_by_dt:?}"
    );
}
