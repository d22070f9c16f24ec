//! The deployment files, checked without a Docker engine or a Kubernetes cluster: `docker/`
//! and `deploy/kubernetes/`.

mod docker;
mod kubernetes;
