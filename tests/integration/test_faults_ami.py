"""AMI (MixMonitor, Hangup events) cut at random moments while calls start their recordings
and hang up: every call still has one recording row, finalised with its sha256, and ends
completed (Hangup events lost with the link are made up for once AMI logs in again)."""

from __future__ import annotations

import pytest

from tests.faults.scenario import run_cuts

from .test_faults_ari import check, seed

pytestmark = pytest.mark.integration


async def test_calls_survive_ami_cuts(sandbox, app_config):
    """10 calls, 4 cuts of AMI (1-5 s each) from ~20 s after the last call arrived: the
    recordings start (~30 s into a call) and the calls hang up while AMI comes and goes."""
    report = await run_cuts(sandbox, sandbox.run_dir / "faults-ami", sandbox.run_dir / "prompts",
                            app_name="callproof_faults_ami", seed=seed(), calls=10, cuts=4, link="ami",
                            first_cut_after=20.0)
    check(report)
