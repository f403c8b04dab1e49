// SPDX-License-Identifier: Apache-2.0
// The mixin's rules and dashboards as Kubernetes objects, for deploy/kubernetes (written by
// mixin/generate into deploy/kubernetes/generated/): a PrometheusRule for the Prometheus
// Operator, and a ConfigMap that Grafana's dashboard sidecar picks up by its label.
local mixin = import 'mixin/mixin.libsonnet';
{
  'prometheus-rule.yaml': {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'pgjobs',
      labels: { 'app.kubernetes.io/part-of': 'pgjobs', release: 'prometheus' },
    },
    spec: mixin.prometheusAlerts,
  },
  'grafana-dashboards.yaml': {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'pgjobs-dashboards',
      labels: { 'app.kubernetes.io/part-of': 'pgjobs', grafana_dashboard: '1' },
    },
    data: {
      [name]: std.manifestJsonEx(mixin.grafanaDashboards[name], '  ')
      for name in std.objectFields(mixin.grafanaDashboards)
    },
  },
}
