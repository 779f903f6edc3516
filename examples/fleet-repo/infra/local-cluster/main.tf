# A real, local Kubernetes cluster per sandbox: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kwok (fake nodes) as host processes on free 127.0.0.1 ports, with their own CA, serving certificates and
# service-account keys, plus the Flux "host kubelet" that runs Flux's controllers while their Deployments are
# ready. fleet-sandbox's `python -m sandbox.localcluster` does the work (see docs/local-cluster.md); this stack
# gives it the lifecycle of infrastructure: apply starts the cluster, destroy stops every process and deletes
# its data, and each sandbox's working directory and workspace hold their own state, as with any stack.
#
# Only the built-in terraform_data resource is used (no provider is downloaded). Every local-exec runs the
# Python named by var.python directly (interpreter = argv, no shell); the cluster directory is its last
# argument.

terraform {
  required_version = ">= 1.4"
}

locals {
  # Inside the sandbox's own terraform working directory unless the caller says otherwise (hidden, so the
  # product's module refresh never touches it), so two sandboxes never share a directory.
  cluster_dir     = var.cluster_dir != "" ? abspath(var.cluster_dir) : abspath("${path.root}/.local-cluster")
  kubeconfig_file = "${local.cluster_dir}/admin.kubeconfig"
  info_file       = "${local.cluster_dir}/cluster.json"
  cli             = [var.python, "-m", "sandbox.localcluster"]
}

# The cluster's directory. Created before the cluster and destroyed after it, this resource's destroy-time
# `down` runs even when the cluster resource is *tainted* (a failed `up`): Terraform runs no destroy-time
# provisioner of a tainted resource, which would otherwise leave the directory (and any process a killed run
# left) behind. `prepare` refuses a non-empty directory that is not a local cluster's.
resource "terraform_data" "cluster_dir" {
  input = {
    dir    = local.cluster_dir
    python = var.python
  }

  triggers_replace = [local.cluster_dir]

  provisioner "local-exec" {
    interpreter = concat(local.cli, ["prepare", "--dir"])
    command     = local.cluster_dir
  }

  provisioner "local-exec" {
    when = destroy
    # Destroy-time provisioners may only reference self: everything they need travels in input.
    interpreter = [self.input.python, "-m", "sandbox.localcluster", "down", "--dir"]
    command     = self.input.dir
  }
}

resource "terraform_data" "cluster" {
  input = {
    name               = var.cluster_name
    kubernetes_version = var.kubernetes_version
    node_count         = var.node_count
    node_size          = var.node_size
    dir                = local.cluster_dir
    python             = var.python
  }

  # A local cluster is cheap to recreate: any change starts a new one (after `down` of the old).
  triggers_replace = [var.cluster_name, var.kubernetes_version, var.node_count, local.cluster_dir]

  depends_on = [terraform_data.cluster_dir]

  provisioner "local-exec" {
    # `up` is idempotent (it resumes a cluster a killed run left) and all-or-nothing (a failed start stops
    # every process again; the directory and its logs stay until destroy).
    interpreter = concat(local.cli, [
      "up",
      "--name", var.cluster_name,
      "--nodes", tostring(var.node_count),
      "--kubernetes-version", var.kubernetes_version,
      "--timeout", tostring(var.start_timeout_seconds),
      "--dir",
    ])
    command = local.cluster_dir
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = [self.input.python, "-m", "sandbox.localcluster", "down", "--dir"]
    command     = self.input.dir
  }
}
