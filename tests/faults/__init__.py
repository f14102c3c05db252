"""Fault injection shared by the fault tests (tests/integration/test_faults_*.py) and
bench/bench_faults.py: a TCP proxy that cuts a link, and the ARI/AMI cut scenarios."""
