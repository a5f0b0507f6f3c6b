"""Packed seeds (neuralgpu.packed): each member of a pack trains as its solo run would, within float tolerance."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pytest
import torch

from neuralgpu.config import ConfigError, check_pack
from neuralgpu.packed import Pack, padding_overhead
from neuralgpu.train import Trainer, train
from tests.tiny import TIMING, neuralgpu_config


def collecting():
    rows: list[dict] = []
    return rows, lambda metrics, checkpoint: rows.append(metrics)


def pack_configs(**overrides):
    # K15's dropout, relaxation copies and pull all on; the length curriculum gives members different lengths.
    values = {"max_steps": 40, "dropout": 0.15, "max_length": 9, "start_length": 3, **overrides}
    return [neuralgpu_config(seed=seed, **values) for seed in (0, 1, 2)]


def solo_curves(cfgs):
    curves = []
    for cfg in cfgs:
        rows, report = collecting()
        train(cfg, report=report)
        curves.append(rows)
    return curves


def pack_curves(cfgs, **kwargs):
    collected = [collecting() for _ in cfgs]
    pack = Pack(cfgs, reports=[report for _, report in collected], **kwargs)
    results = pack.run()
    return [rows for rows, _ in collected], results, pack


def untimed(curves):
    return [[{k: v for k, v in row.items() if k not in TIMING} for row in rows] for rows in curves]


def assert_close_curves(solo, packed, keys=("train/loss", "train/seq_error", "curriculum/length")):
    assert [row["step"] for row in solo] == [row["step"] for row in packed]
    for a, b in zip(solo, packed, strict=True):
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)


def test_members_start_from_their_solo_weights():
    cfgs = pack_configs()
    pack = Pack(cfgs)
    for cfg, member in zip(cfgs, pack.members, strict=True):
        solo = Trainer(cfg, None, None)
        for (name, a), b in zip(solo.model.state_dict().items(), member.model.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    # The members' parameters are views of the pack's stacked tensors: an update of one is an update of the other.
    stacked = pack.model.stacked["embed.weight"]
    assert pack.members[1].model.embed.weight.data_ptr() == stacked[1].data_ptr()


@pytest.mark.parametrize("lengths", ["pad", "group"])
def test_packed_members_follow_their_solo_runs(lengths):
    cfgs = pack_configs()
    solo = solo_curves(cfgs)
    packed, results, pack = pack_curves(cfgs, lengths=lengths)
    if lengths == "pad":
        assert max(pack.padding) > 1 and set(pack.forwards) == {1}, "members of different lengths in one pass"
    else:
        assert max(pack.forwards) > 1 and set(pack.padding) == {1.0}, "one pass per length, nothing padded"
    for a, b in zip(solo, packed, strict=True):
        assert_close_curves(a, b)
    assert [r.steps for r in results] == [40, 40, 40]


def test_packed_f17_members_follow_their_solo_runs():
    # F17's recipe: bins (every member trains every length each step), badd's dropout 0.5, the saturation cost
    # with its adapted weight, F17's AdaMax and LR rule; one member stops early.
    cfgs = [
        neuralgpu_config(model="f17", seed=seed, max_length=9, bins=[5, 9], max_steps=steps, report_every=2)
        for seed, steps in ((0, 40), (1, 8), (2, 40))
    ]
    solo = solo_curves(cfgs)
    packed, results, pack = pack_curves(cfgs)
    assert [r.steps for r in results] == [40, 8, 40] and set(pack.forwards) == {1}
    # F17's learning rate at width 4 is 0.12: from step ~15 on, rounding differences between grouped and plain
    # convolutions grow by orders of magnitude a step (the runs are chaotic), so the first steps are compared.
    for a, b in zip(solo, packed, strict=True):
        first = [row for row in a if row["step"] <= 14]
        assert_close_curves(first, b[: len(first)], keys=("train/loss", "train/seq_error", "train/saturation_weight"))


def test_a_member_that_stops_leaves_the_pack_and_the_others_go_on():
    cfgs = pack_configs()
    cfgs[0] = neuralgpu_config(**{**cfgs[0].to_dict(), "max_steps": 30})
    cfgs[1] = neuralgpu_config(**{**cfgs[1].to_dict(), "max_steps": 20})
    solo = solo_curves(cfgs)
    packed, results, _ = pack_curves(cfgs, lengths="pad")
    assert [r.steps for r in results] == [30, 20, 40]  # the last 10 steps, one member trains alone
    assert [r.stop_reason for r in results] == ["max_steps"] * 3
    for a, b in zip(solo, packed, strict=True):
        assert_close_curves(a, b)


def test_a_pack_is_deterministic():
    first, _, _ = pack_curves(pack_configs(max_steps=20))
    second, _, _ = pack_curves(pack_configs(max_steps=20))
    assert untimed(first) == untimed(second)


def test_a_resumed_pack_continues_exactly(tmp_path):
    cfgs = pack_configs(max_steps=40)
    dirs = [tmp_path / f"member{i}" for i in range(3)]
    kept = [tmp_path / f"kept{i}" for i in range(3)]
    whole = [[] for _ in cfgs]

    def keeping(i):
        def report(metrics, checkpoint):
            whole[i].append(metrics)
            if metrics["step"] == 20:  # the checkpoint a killed pack would resume from
                shutil.copytree(checkpoint, kept[i])

        return report

    Pack(cfgs, reports=[keeping(i) for i in range(3)], checkpoint_dirs=[str(d) for d in dirs]).run()
    resumed, results, _ = pack_curves(cfgs, resume_from=[str(d) for d in kept])
    assert [r.steps for r in results] == [40, 40, 40]
    assert untimed(resumed) == untimed([[row for row in rows if row["step"] > 20] for rows in whole])
    # Each member's checkpoint is a solo run's, holding its own weights only (not the pack's whole storage).
    state = Trainer.load_checkpoint(kept[2])
    weight = state["model"]["embed.weight"]
    assert weight.untyped_storage().nbytes() == weight.numel() * weight.element_size()


def test_members_of_different_cells_are_refused():
    cfgs = [neuralgpu_config(seed=0), neuralgpu_config(seed=1, width=8)]
    with pytest.raises(ConfigError, match="lengths is 'sorted'"):
        Pack([neuralgpu_config(seed=0)], lengths="sorted")
    with pytest.raises(ConfigError, match="differ in `width`"):
        check_pack(cfgs)
    with pytest.raises(ConfigError, match="memory 'checkpoint'.*memory plain"):
        check_pack([neuralgpu_config(seed=0, memory="checkpoint")])
    with pytest.raises(ConfigError, match="lengths='group'"):
        Pack([neuralgpu_config(seed=0, model="f17", bins=[5, 7])], lengths="pad")
    check_pack([neuralgpu_config(seed=0), neuralgpu_config(seed=5, max_steps=7)])  # seeds and budgets may differ


def test_padding_overhead_counts_the_longest_members_work():
    assert padding_overhead([4, 4]) == 1.0
    assert padding_overhead([2, 4]) == pytest.approx(2 * 16 / (4 + 16))
    assert math.isclose(padding_overhead([3]), 1.0)


def test_command_line_trains_a_pack(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("task: badd\nwidth: 4\nmax_length: 7\nstart_length: 4\neval_lengths: [9]\nprobes: false\n")
    out = subprocess.run(
        [sys.executable, "-m", "neuralgpu.packed", "--config", str(config), "--seeds", "3", "4", "--max-steps", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "seed 3: max_steps at step 5" in out.stdout and "seed 4: max_steps at step 5" in out.stdout
