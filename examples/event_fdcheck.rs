//! Fixed-structure check of the event-time tangents (development aid).
use myodiff::event::{EventDrive, Observable, Param, RunOptions};
use myodiff::network::{MYOGEN_WEIGHT_S, NetworkConfig};
fn main() -> myodiff::Result<()> {
    let cfg = NetworkConfig {
        n_mn: 100,
        n_dd: 200,
        duration_s: 0.5,
        seed: 3,
        ..Default::default()
    };
    let net = myodiff::event::EventNetwork::new(&cfg)?;
    let drive = EventDrive::watanabe(60.0);
    let ps = vec![Param::Dc, Param::Amp, Param::NoiseSd, Param::Weight];
    let run = net.run(
        &drive,
        MYOGEN_WEIGHT_S,
        &RunOptions {
            params: ps.clone(),
            creation: None,
            insertion: None,
        },
    )?;
    let obs = [
        Observable::MeanForce {
            t0_s: 0.1,
            t1_s: 0.5,
        },
        Observable::ForceAmplitude {
            t0_s: 0.1,
            t1_s: 0.5,
            freq_hz: 20.0,
        },
        Observable::PoolRate {
            t0_s: 0.1,
            t1_s: 0.5,
            taper_s: 0.05,
        },
    ];
    let n: usize = run.spikes_s.iter().map(|s| s.len()).sum();
    println!("spikes {n}");
    for o in obs {
        let (v, g) = o.eval(&run)?;
        for (q, &p) in ps.iter().enumerate() {
            let h = if p == Param::Weight {
                MYOGEN_WEIGHT_S * 1e-7
            } else {
                1e-6
            };
            let f = |d: f64| -> myodiff::Result<(f64, usize)> {
                let (dr, w) = if p == Param::Weight {
                    (drive.clone(), MYOGEN_WEIGHT_S + d)
                } else {
                    (drive.with(p, drive.get(p)? + d)?, MYOGEN_WEIGHT_S)
                };
                let r = net.run(&dr, w, &RunOptions::default())?;
                Ok((o.eval(&r)?.0, r.spikes_s.iter().map(|s| s.len()).sum()))
            };
            let (fp, np_) = f(h)?;
            let (fm, nm) = f(-h)?;
            let fd = (fp - fm) / (2.0 * h);
            println!(
                "{} {:?}: value {v:.6} tangent {:.8e} fd {:.8e} rel {:.2e} (spikes {np_} {nm})",
                o.label(),
                p,
                g[q],
                fd,
                (g[q] - fd).abs() / fd.abs().max(1e-300)
            );
        }
    }
    Ok(())
}
