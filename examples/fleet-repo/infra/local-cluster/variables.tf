# Inputs of the local-cluster stack. The names follow the example's other cluster module (infra/cluster), so an
# environment can point at either with the same variables.

variable "cluster_name" {
  description = "Name of the cluster (kubeconfig context, CA subject). Changing it replaces the cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]*[a-z0-9])?$", var.cluster_name)) && length(var.cluster_name) <= 40
    error_message = "The cluster_name must be a lowercase DNS label of at most 40 characters."
  }
}

variable "kubernetes_version" {
  description = "Control-plane version as MAJOR.MINOR; must be the toolchain's (make toolchain), else apply fails."
  type        = string
  default     = "1.36"

  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.kubernetes_version))
    error_message = "The kubernetes_version must look like \"1.36\"."
  }
}

variable "node_count" {
  description = "Number of fake (kwok) nodes. Changing it replaces the cluster."
  type        = number
  default     = 1

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 50 && floor(var.node_count) == var.node_count
    error_message = "The node_count must be a whole number from 1 to 50."
  }
}

variable "node_size" {
  description = "Recorded only (a kwok node's capacity is fixed); kept so environments can pass the same variables."
  type        = string
  default     = "kwok"
}

variable "region" {
  description = "Ignored (a local cluster lives on this machine); kept so environments can pass the same variables."
  type        = string
  default     = "local-1"
}

variable "cluster_dir" {
  description = "Where the cluster's processes keep their data, logs and pid files; default: .local-cluster in the working directory."
  type        = string
  default     = ""

  validation {
    condition     = var.cluster_dir == "" || (length(trimspace(var.cluster_dir)) > 0 && abspath(var.cluster_dir) != "/")
    error_message = "The cluster_dir must be empty (the default) or a directory other than the filesystem root."
  }
}

variable "python" {
  description = <<-EOT
    The Python interpreter that runs `python -m sandbox.localcluster`: one where fleet-sandbox is installed
    (the product's venv, e.g. /path/to/.venv/bin/python). The default, python3 on PATH, only works when that
    one can import the `sandbox` package.
  EOT
  type        = string
  default     = "python3"
}

variable "start_timeout_seconds" {
  description = "How long `up` waits for every component to be ready."
  type        = number
  default     = 600
}
