"""Valkey on Kubernetes, one region per stack: the layers, bottom to top.

A module imports only from its own layer and the ones below (tests/test_layout.py checks it). The
config checks and loader sit above sizing (a maxmemory must fit the limit sizing computes); the
rest of config/ is the bottom layer.

config/            the stack configuration: the only part that reads Pulumi config
  types.py         value types: sizes, durations, CPU, integers, images, CIDRs, URLs
  names.py         name types: DNS labels and subdomains, label keys and values, port names
  pem.py           CA bundles, parsed as certificates
  valkey_commands.py  the commands and ACL categories the supported Valkey versions know (+ .json)
  security.py      TLS, network policy, password rotation, denied commands
  migration.py     a migration source and the keyspace copy Job's settings
  models.py        the stack file's schema and defaults (StackConfig, Instance, alert thresholds)
  problems.py      a problem with the config, and the one message that lists them
  checks.py        rules between fields, each reported at the key to change
  loader.py        reads the valkey: keys, validates them, stops with one RunError
object_names.py    every Kubernetes and Pulumi name an instance creates
sizing.py          backlog, maxmemory, the memory model (limit; replica and client buffer bounds), volume, AOF size
render/            files, rendered from validated settings; never imports Pulumi
  paths.py         where each file lives in the pod, and its config Secret key
  acl.py           the ACL file: every user and what it may do
  valkey_conf.py   valkey.conf (a group member's static part; start.sh adds its role)
  sentinel_conf.py a group's Sentinel config, the two parts sentinel.sh puts its identity between
  exporter.py      the metrics exporters' flags and password files (a node's, a Sentinel's)
  pod_scripts.py   the shell scripts the pods run (scripts/*.sh: probes, reloader, the fence, a single
                   pod's and a group's start, Sentinel and label updater), read as files, and
                   their environments
  files.py         the config Secret's contents, and what needs a restart
  promql.py        the PromQL vocabulary the rules share: selectors, the role join, alert rules
  alerts.py        Prometheus recording rules and alerts about nodes; the rule groups
  group_alerts.py  recording rules and alerts about groups: members, quorum, failovers, region 2's head
  memory_alerts.py the memory model's constants per instance, and the alerts about forks near the limit
specs/             pulumi_kubernetes arguments built from settings; never creates a resource
  labels.py        every label, and what reads it
  security_context.py  the restricted container security context
  pod.py           the pod template: containers, probes, reloader sidecar, volumes
  exporter.py      the metrics sidecars' containers and volumes (a node's, a Sentinel's)
  sentinel.py      a group's Sentinel sidecar and the pod's writable volumes
  labeler.py       a group's role-label updater sidecar, its token volume and Role rules
  rbac.py          the label updater's Role reference and subjects
  services.py      headless, client, external (LoadBalancer), and a group's read and Sentinel Services
  disruption_budget.py  the PodDisruptionBudget
  statefulset.py   the StatefulSet, its claim template, the claim-size patch
  marker.py        the ConfigMap that says an instance was Ready once: its pods then fence an empty primary
  certificate.py   TLS sources, DNS names, the cert-manager Certificate
  network_policy.py  the NetworkPolicy
  migration.py     the keyspace copy's Job (its command line, mounts, failure policy) and metrics Service
  monitoring.py    the ServiceMonitor (relabelings) and the PrometheusRule's arguments
namespace.py       component: the namespace (Pod Security Standards labels)
credentials.py     component: generated passwords and the Secrets that hold them
valkey_server.py   component: one instance in one region; the order and options of its resources
monitoring.py      component: the ServiceMonitor and PrometheusRule of a stack
migration.py       component: an instance's keyspace copy Job, its metrics Service and ServiceMonitor
stack/             what a stack shows other stacks
  instances.py     each instance's arguments in this region: primary or replica, endpoint, trust, policy
  outputs.py       the outputs contract
  primary.py       reading and checking the primary region's outputs (a replica's upstream)
"""
