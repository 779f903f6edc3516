# A local stand-in for a managed Kubernetes cluster module (EKS and friends).
#
# Only the built-in terraform_data resource is used, so the module works without
# downloading any provider. The "cluster" is a record in the state plus a
# directory (simulation_dir) where the simulated cluster keeps its on-disk state;
# what the cluster's controllers create outside it (load balancers, volumes) is
# recorded as files under <simulation_dir>/external.

terraform {
  required_version = ">= 1.4"
}

locals {
  # Absolute, so the path stays right whatever directory terraform runs in.
  simulation_dir = abspath(var.simulation_dir)

  # Written into the simulation directory at create time; destroy removes the
  # directory only when it finds this file, so a mistyped simulation_dir can
  # never make destroy delete somebody else's files.
  marker_file = ".fleet-sandbox-simulation"
}

# Stands in for the cluster's network (the VPC). It is created before the
# cluster and deleted after it, and — like a VPC that AWS refuses to delete while
# load balancers or volumes still use it — its deletion fails while any external
# resource is recorded under <simulation_dir>/external.
resource "terraform_data" "network" {
  input = {
    region         = var.region
    simulation_dir = local.simulation_dir
    marker_file    = local.marker_file
    force_destroy  = var.force_destroy
  }

  triggers_replace = [var.region]

  provisioner "local-exec" {
    environment = {
      SIMULATION_DIR = local.simulation_dir
      MARKER_FILE    = local.marker_file
    }
    # Refuse to adopt an existing, non-empty directory that is not ours.
    command = <<-EOT
      set -eu
      if [ -d "$SIMULATION_DIR" ] && [ -n "$(ls -A "$SIMULATION_DIR")" ] && [ ! -f "$SIMULATION_DIR/$MARKER_FILE" ]; then
        echo "simulation_dir $SIMULATION_DIR already holds files and is not a simulation directory; refusing to use it" >&2
        exit 1
      fi
      mkdir -p "$SIMULATION_DIR"
      echo "created by the fleet-sandbox local cluster module" > "$SIMULATION_DIR/$MARKER_FILE"
    EOT
  }

  provisioner "local-exec" {
    when = destroy
    # Destroy-time provisioners may only reference self, hence everything they
    # need travels in input.
    environment = {
      SIMULATION_DIR = self.input.simulation_dir
      MARKER_FILE    = self.input.marker_file
      FORCE_DESTROY  = tostring(self.input.force_destroy)
    }
    command = <<-EOT
      set -eu
      external="$SIMULATION_DIR/external"
      if [ -d "$external" ] && [ -n "$(ls -A "$external")" ]; then
        dangling="$(ls -A "$external" | tr '\n' ' ')"
        if [ "$FORCE_DESTROY" != "true" ]; then
          echo "cannot delete the network of $SIMULATION_DIR: external resources still exist in $external: $dangling" >&2
          exit 1
        fi
        echo "force_destroy: deleting dangling external resources: $dangling" >&2
      fi
      if [ -f "$SIMULATION_DIR/$MARKER_FILE" ]; then
        rm -rf -- "$SIMULATION_DIR"
      elif [ -e "$SIMULATION_DIR" ]; then
        echo "not removing $SIMULATION_DIR: it has no $MARKER_FILE marker" >&2
      fi
    EOT
  }
}

resource "terraform_data" "cluster" {
  # Changing any of these is an in-place update of the cluster (a control-plane
  # upgrade, a node-group resize).
  input = {
    name               = var.cluster_name
    kubernetes_version = var.kubernetes_version
    node_count         = var.node_count
    node_size          = var.node_size
    simulation_dir     = local.simulation_dir
  }

  # Changing these forces a new cluster, as renaming or moving a managed
  # cluster does. Callers that must not lose a cluster refuse such plans.
  triggers_replace = [var.cluster_name, var.region]

  depends_on = [terraform_data.network]

  provisioner "local-exec" {
    environment = {
      SIMULATION_DIR = local.simulation_dir
    }
    command = "mkdir -p \"$SIMULATION_DIR/external\""
  }
}
