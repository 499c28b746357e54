"""What `doctor` says of where learners may run on a compose inventory (edges/probes.py): the
learner hosts with their data directories, a host with the addon but no data_dir named with
the fix, and none said as a verdict with the fix, never as a problem (a site may only build
images). Pure: it reads the configuration only. The swarm's learner nodes are read from a
real swarm in tests/integration/test_swarm.py."""

from __future__ import annotations

from reconciler.core.config import Config, HostConfig
from reconciler.edges.probes import probes_for


def learner_verdict(*hosts: HostConfig) -> str:
    [probe] = [p for p in probes_for(Config(hosts=list(hosts))) if p.name == "learner hosts"]
    return probe.run()


def test_the_learner_hosts_are_listed_with_their_data_directories() -> None:
    verdict = learner_verdict(
        HostConfig(name="a", addons=("image-builder", "FLOps-learner"), data_dir="/srv/a"),
        HostConfig(name="b", addons=("FLOps-learner",)),
        HostConfig(name="c", data_dir="/srv/c"))
    lines = verdict.splitlines()
    assert lines[0] == "1 of 3 host(s)"
    assert lines[1].strip() == "a: data_dir /srv/a"
    assert lines[2].strip() == "b: no data_dir, so no learner: give it one"
    assert len(lines) == 3  # c has data but no addon: not a learner host


def test_no_learner_host_is_said_with_the_fix_not_as_a_problem() -> None:
    verdict = learner_verdict(HostConfig(name="a", addons=("image-builder",)))
    assert verdict.startswith("none: a project with a training_configuration waits for one")
    assert 'addons = ["FLOps-learner"] and a data_dir' in verdict
