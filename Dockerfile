# The fleet-sandbox worker image.
#
# One image for both sides of the Kubernetes work pool (deployments/kubernetes-pool.json):
#   * the worker:        prefect worker start --pool fleet-sandbox-kubernetes --type kubernetes
#                        (deployments/kubernetes/worker.yaml runs it as a Deployment);
#   * each flow run Job the worker creates (the pool's `image` job variable names this image).
# A process-pool worker host can run it too, or a plain checkout with `make setup`.
#
# It holds the project at $FLEET_SANDBOX_HOME (prefect.yaml's pull step changes into it),
# its locked Python dependencies (Prefect, prefect-kubernetes, ...), git and terraform.
# fleet.yaml is not baked in: mount it at $FLEET_SANDBOX_HOME/fleet.yaml (a ConfigMap),
# and the shared volume (task results, state_dir) at /shared. See docs/operations.md.
#
#   docker build -t registry.example/platform/fleet-sandbox:$(git rev-parse --short HEAD) .
FROM python:3.11-slim-bookworm

ARG TERRAFORM_VERSION=1.11.4
# Set by BuildKit (amd64, arm64); the terraform archive is picked for it.
ARG TARGETARCH=amd64

ENV FLEET_SANDBOX_HOME=/opt/fleet-sandbox \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREFECT_RESULTS_PERSIST_BY_DEFAULT=true \
    PREFECT_RESULTS_LOCAL_STORAGE_PATH=/shared/prefect-results

# git for the fleet repository, ssh for ssh:// remotes, terraform for the cluster module
# (checked against HashiCorp's published SHA256SUMS).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl git openssh-client unzip; \
    cd /tmp; \
    base="https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}"; \
    archive="terraform_${TERRAFORM_VERSION}_linux_${TARGETARCH}.zip"; \
    curl -fsSLO "${base}/${archive}"; \
    curl -fsSL "${base}/terraform_${TERRAFORM_VERSION}_SHA256SUMS" | grep " ${archive}\$" | sha256sum -c -; \
    unzip -q "${archive}" terraform -d /usr/local/bin; \
    rm -f "${archive}"; \
    apt-get purge -y --auto-remove curl unzip; \
    rm -rf /var/lib/apt/lists/*; \
    terraform version

WORKDIR /opt/fleet-sandbox

# Dependencies first (cached while only the code changes), exactly as locked.
COPY requirements.lock ./
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir --upgrade pip \
    && pip install --no-cache-dir -r requirements.lock

COPY . .
RUN pip install --no-cache-dir --no-deps -e . \
    && useradd --uid 10001 --home-dir /home/fleet --create-home fleet \
    && mkdir -p /shared \
    && chown fleet /shared

USER 10001
# Prefect's home (profiles, local caches) is per container; everything shared is on /shared or the server.
ENV PREFECT_HOME=/home/fleet/.prefect

CMD ["prefect", "worker", "start", "--pool", "fleet-sandbox-kubernetes", "--type", "kubernetes", "--with-healthcheck"]
