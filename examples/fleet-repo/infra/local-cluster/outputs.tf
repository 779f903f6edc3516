# The endpoint and the kubeconfig are only known once `up` has written them into the cluster directory. The
# resource's id is unknown until apply, so these expressions are evaluated at apply time, after the
# provisioner ran. (A plain `fileexists(f) ? file(f) : null` with depends_on is evaluated during plan, when the
# file does not exist yet, and a saved plan then applies that null: checked with terraform 1.11.)
locals {
  created = terraform_data.cluster.id != ""
  info    = local.created && fileexists(local.info_file) ? jsondecode(file(local.info_file)) : null
}

output "cluster_name" {
  description = "Name of the cluster."
  value       = terraform_data.cluster.output.name
}

output "kubernetes_version" {
  description = "Control-plane version (MAJOR.MINOR): the toolchain's."
  value       = local.info == null ? var.kubernetes_version : local.info.kubernetes_version
}

output "cluster_endpoint" {
  description = "The API server: https://127.0.0.1:<port>."
  value       = local.info == null ? null : local.info.endpoint
}

output "node_count" {
  description = "Number of (kwok) nodes."
  value       = terraform_data.cluster.output.node_count
}

output "node_size" {
  description = "Node size (recorded only: kwok nodes all have the same fake capacity)."
  value       = terraform_data.cluster.output.node_size
}

output "cluster_dir" {
  description = "The local cluster's directory (processes, logs, data)."
  value       = local.cluster_dir
}

output "kubeconfig" {
  description = "Cluster-admin kubeconfig (client certificate and CA embedded)."
  value       = local.created && fileexists(local.kubeconfig_file) ? file(local.kubeconfig_file) : null
  sensitive   = true
}
