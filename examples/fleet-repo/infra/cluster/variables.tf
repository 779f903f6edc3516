# Inputs of the local sandbox-cluster module. The names and types follow what a
# managed-cluster module (EKS, GKE, AKS) would take, so the fleet configuration
# looks the same whether it points at this stand-in or at the real thing.

variable "cluster_name" {
  description = "Name of the cluster. Changing it replaces the cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]*[a-z0-9])?$", var.cluster_name)) && length(var.cluster_name) <= 40
    error_message = "The cluster_name must be a lowercase DNS label of at most 40 characters."
  }
}

variable "kubernetes_version" {
  description = "Control-plane version as MAJOR.MINOR, e.g. \"1.31\". Changing it is an in-place upgrade."
  type        = string

  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.kubernetes_version))
    error_message = "The kubernetes_version must look like \"1.31\"."
  }
}

variable "node_count" {
  description = "Number of worker nodes. Changing it is an in-place update."
  type        = number

  validation {
    condition     = var.node_count >= 1 && floor(var.node_count) == var.node_count
    error_message = "The node_count must be a whole number of at least 1."
  }
}

variable "node_size" {
  description = "Worker node size (instance type), e.g. \"small\" or \"large\". Changing it is an in-place update."
  type        = string

  validation {
    condition     = length(var.node_size) > 0
    error_message = "The node_size must not be empty."
  }
}

variable "region" {
  description = "Where the cluster lives. Changing it replaces the cluster."
  type        = string
  default     = "local-1"
}

variable "simulation_dir" {
  description = "Directory holding the simulated cluster's on-disk state (created at apply, removed at destroy)."
  type        = string

  validation {
    condition     = length(trimspace(var.simulation_dir)) > 0 && abspath(var.simulation_dir) != "/"
    error_message = "The simulation_dir must be a directory other than the filesystem root."
  }
}

variable "force_destroy" {
  description = <<-EOT
    Let destroy delete dangling external resources (simulated load balancers and
    volumes) instead of failing on them. Like an S3 bucket's force_destroy, it is
    read from the state at destroy time, so it must be applied before the destroy.
  EOT
  type        = bool
  default     = false
}
