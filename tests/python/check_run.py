"""Reads a myodiff run back with the reference readers (numpy, pynwb, nwbinspector).

Usage: check_run.py RESULT.npz RESULT.nwb N_SETS N_UNITS N_STEPS DT_S HAS_EMG(0|1)

Checks that the NWB units table, force and EMG series agree with the NPZ arrays (same spike
times, shapes, rate = 1/dt, SI unit strings), that the experiment spec is stored in both, that
the file validates against the NWB core schema (pynwb.validate) and that nwbinspector reports no
CRITICAL issue. Exits non-zero with the reason on any mismatch;
prints one line per check.
"""
import sys

import numpy as np
from pynwb import NWBHDF5IO

npz_path, nwb_path = sys.argv[1], sys.argv[2]
n_sets, n_units, n_steps = (int(x) for x in sys.argv[3:6])
dt_s = float(sys.argv[6])
has_emg = sys.argv[7] == "1"


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok: {what}")


z = np.load(npz_path)
check(float(z["dt_s"]) == dt_s, f"npz dt_s = {float(z['dt_s'])}")
check(int(z["n_sets"]) == n_sets and int(z["n_units"]) == n_units, "npz n_sets / n_units")
check(z["force_n"].shape[:2] == (n_sets, n_steps), f"npz force_n shape {z['force_n'].shape}")
spec = str(z["spec_toml"])
check("[drive]" in spec and "name = " in spec, "npz spec_toml holds the experiment spec")

with NWBHDF5IO(nwb_path, "r") as io:
    nwb = io.read()
    units = nwb.units
    check(len(units) == n_sets * n_units, f"units table has {len(units)} rows")
    df = units.to_dataframe()
    for row in range(len(units)):
        b, u = int(df["parameter_set"].iloc[row]), int(df["motor_unit"].iloc[row])
        want = z["spike_times_s"][(z["spike_set"] == b) & (z["spike_unit"] == u)]
        got = np.asarray(units["spike_times"][row])
        if not np.array_equal(got, want):
            check(False, f"spike times of set {b} unit {u}: {got[:5]} vs {want[:5]}")
    check(True, "spike times of every (set, unit) row equal the npz trains")
    for b in range(n_sets):
        sfx = "" if n_sets == 1 else f"_set{b}"
        f = nwb.acquisition["force" + sfx]
        check(f.data.shape == (n_steps, z["force_n"].shape[2]), f"force{sfx} shape {f.data.shape}")
        check(f.unit == "newtons", f"force{sfx} unit {f.unit}")
        check(abs(f.rate - 1.0 / dt_s) < 1e-3 * (1.0 / dt_s), f"force{sfx} rate {f.rate} Hz")
        check(np.allclose(f.data[:], z["force_n"][b]), f"force{sfx} values equal the npz")
        if has_emg:
            e = nwb.acquisition["surface_emg" + sfx]
            rows, cols = (int(x) for x in z["grid_shape"])
            check(e.data.shape == (n_steps, rows * cols), f"surface_emg{sfx} shape {e.data.shape}")
            check(e.unit == "volts", f"surface_emg{sfx} unit {e.unit}")
            check(len(e.electrodes) == rows * cols, "EMG electrodes region covers every channel")
            check(
                np.allclose(e.data[:], z["surface_emg_v"][b].reshape(n_steps, rows * cols)),
                f"surface_emg{sfx} values equal the npz",
            )
            check(e.data.compression == "gzip" or e.data.size < 4096, "EMG data deflated")
    if has_emg:
        el = nwb.electrodes.to_dataframe()
        check(len(el) == int(np.prod(z["grid_shape"])), f"electrodes table has {len(el)} rows")
        check(np.allclose(el["z_m"], z["electrode_zx_m"][:, 0]), "electrode positions (m)")
    check(nwb.source_script == spec, "NWB general/source_script holds the experiment spec")

import warnings  # noqa: E402

from pynwb import validate  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "no cached namespace": validated against pynwb's core schema
    res = validate(path=nwb_path)
errors = res[0] if isinstance(res, tuple) else res
for e in errors:
    print(f"pynwb validation: {e}")
check(not errors, f"pynwb schema validation: {len(errors)} errors")

from nwbinspector import inspect_nwbfile, Importance  # noqa: E402

msgs = list(inspect_nwbfile(nwbfile_path=nwb_path))
for m in msgs:
    print(f"nwbinspector: {m.importance.name}: {m.check_function_name}: {m.message}")
crit = [m for m in msgs if m.importance == Importance.CRITICAL]
check(not crit, f"nwbinspector: {len(crit)} CRITICAL of {len(msgs)} messages")
print("all checks passed")
