output "cluster_name" {
  description = "Name of the cluster."
  value       = terraform_data.cluster.output.name
}

output "kubernetes_version" {
  description = "Control-plane version (MAJOR.MINOR)."
  value       = terraform_data.cluster.output.kubernetes_version
}

output "cluster_endpoint" {
  description = "Where the cluster's API is reached; simulated:// names the simulation directory."
  value       = "simulated://${abspath(var.simulation_dir)}"
}

output "node_count" {
  description = "Number of worker nodes."
  value       = terraform_data.cluster.output.node_count
}

output "node_size" {
  description = "Worker node size."
  value       = terraform_data.cluster.output.node_size
}

output "cluster_token" {
  description = "Credential for the cluster's API (stable for the cluster's lifetime)."
  # The resource's id is a random UUID assigned at create, so it changes only
  # when the cluster is replaced — as a real cluster's credentials would.
  value     = terraform_data.cluster.id
  sensitive = true
}
