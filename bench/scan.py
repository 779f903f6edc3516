"""Static deprecation scan throughput: ``scan_manifests_per_second``.

A generated fleet-like tree of 10,000 manifests (one object per file, in 100
app directories, each with its kustomize ``kustomization.yaml``) is scanned
with ``sandbox.deprecations.scan_path`` at Kubernetes 1.31, as the validate
stage scans a sandbox. One manifest in twenty uses an API version removed
before 1.31, so each scan must report exactly that many removed findings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.common import WORK_DIR, BenchError, Metric, elapsed, log
from bench.profiling import Profiler
from sandbox.deprecations import ScanReport, scan_path

#: Manifests in the generated tree.
MANIFESTS = 10_000
#: App directories they are spread over.
DIRECTORIES = 100
#: Repetitions (the figure is the median).
REPETITIONS = 5
#: The generated tree (kept between runs while its stamp matches).
TREE = WORK_DIR / "scan-tree"
#: Bump when the generator changes.
GENERATOR_VERSION = 1
#: The target version the scan runs at.
K8S_VERSION = "1.31"

_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app.kubernetes.io/name: {name}
    app.kubernetes.io/part-of: {namespace}
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {name}
      annotations:
        prometheus.io/scrape: "true"
    spec:
      containers:
        - name: app
          image: ghcr.io/example-org/{name}:1.{index}.0
          ports:
            - containerPort: 8080
              name: http
          env:
            - name: LOG_LEVEL
              value: info
            - name: FEATURE_FLAGS
              value: "a,b,c"
          resources:
            requests:
              cpu: 100m
              memory: 128Mi
            limits:
              memory: 256Mi
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
"""

_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: {name}
  ports:
    - name: http
      port: 80
      targetPort: http
"""

_CONFIGMAP = """\
# settings for {name}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {namespace}
data:
  settings.yaml: |
    server:
      port: 8080
      timeout: 30s
    cache:
      size: {index}
  greeting: "hello from {name}"
"""

_HELMRELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: {name}
  namespace: {namespace}
spec:
  interval: 10m
  chart:
    spec:
      chart: {name}
      version: "1.{index}.x"
      sourceRef:
        kind: HelmRepository
        name: charts
        namespace: flux-system
  values:
    replicaCount: 2
    ingress:
      enabled: true
      hosts:
        - host: {name}.example.com
          paths: ["/"]
    resources:
      requests:
        cpu: 50m
"""

_INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: {namespace}
  annotations:
    kubernetes.io/ingress.class: alb
spec:
  rules:
    - host: {name}.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: {name}
                port:
                  number: 80
"""

#: APIs removed before Kubernetes 1.31 (each must be reported as removed).
_REMOVED = [
    "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    "spec:\n  backend:\n    serviceName: {name}\n    servicePort: 80\n",
    "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    "spec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {name}\n",
    "apiVersion: autoscaling/v2beta2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: {name}\n"
    "  namespace: {namespace}\nspec:\n  minReplicas: 2\n  maxReplicas: 5\n  scaleTargetRef:\n"
    "    apiVersion: apps/v1\n    kind: Deployment\n    name: {name}\n",
    "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    "spec:\n  schedule: '0 3 * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n"
    "          restartPolicy: OnFailure\n          containers:\n            - name: job\n"
    "              image: busybox\n",
]

_CURRENT = [_DEPLOYMENT, _SERVICE, _CONFIGMAP, _HELMRELEASE, _INGRESS]


def generate_tree(root: Path = TREE) -> tuple[Path, int]:
    """The tree of :data:`MANIFESTS` manifests (reused while its stamp matches).

    Returns:
        The tree's root and how many manifests use a removed API.
    """
    per_directory = MANIFESTS // DIRECTORIES
    removed = sum(1 for index in range(MANIFESTS) if index % 20 == 7)
    stamp = root / ".stamp"
    expected_stamp = f"v{GENERATOR_VERSION} {MANIFESTS} {DIRECTORIES}"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == expected_stamp:
        return root, removed
    if root.exists():
        shutil.rmtree(root)
    for directory_index in range(DIRECTORIES):
        namespace = f"team-{directory_index:03d}"
        directory = root / "apps" / namespace
        directory.mkdir(parents=True)
        files = []
        for slot in range(per_directory):
            index = directory_index * per_directory + slot
            name = f"svc-{index:05d}"
            removed_api = index % 20 == 7
            template = _REMOVED[index // 20 % len(_REMOVED)] if removed_api else _CURRENT[index % len(_CURRENT)]
            file = f"{name}.yaml"
            (directory / file).write_text(template.format(name=name, namespace=namespace, index=index % 50))
            files.append(file)
        (directory / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
            + "".join(f"  - {file}\n" for file in files)
        )
    stamp.write_text(expected_stamp, encoding="utf-8")
    return root, removed


def scan(root: Path, removed: int) -> ScanReport:
    """Scan the tree once, checking that every removed API was reported."""
    report = scan_path(root, k8s_version=K8S_VERSION)
    found = len(report.removed)
    if found != removed or report.skipped:
        raise BenchError(f"scan found {found} removed APIs (expected {removed}), skipped {len(report.skipped)} files")
    return report


def run(repetitions: int = REPETITIONS) -> list[Metric]:
    """The metric."""
    root, removed = generate_tree()
    scan(root, removed)  # warm the page cache and the deprecation data
    rates = []
    for index in range(repetitions):
        seconds = elapsed(lambda: scan(root, removed))
        rates.append(MANIFESTS / seconds)
        log(f"scan {index + 1}/{repetitions}: {MANIFESTS} manifests in {seconds:.2f}s ({rates[-1]:.0f}/s)")

    def profile(profiler: Profiler) -> None:
        profiler.call(lambda: scan(root, removed))

    return [
        Metric(
            name="scan_manifests_per_second",
            bar=2000,
            better="higher",
            unit="manifests/s",
            description=f"deprecations.scan_path over a generated tree of {MANIFESTS:,} manifests (k8s {K8S_VERSION})",
            samples=rates,
            profile=profile,
        )
    ]
