//! End-to-end tests of the kind runtime (`tests/`). They create a real kind cluster with the
//! node image `scripts/install-kind.sh` builds, so `scripts/test.sh` runs them in a step of
//! their own, after that install.
