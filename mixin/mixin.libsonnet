// SPDX-License-Identifier: Apache-2.0
// The pgjobs monitoring mixin: prometheusAlerts and grafanaDashboards, as monitoring-mixins
// expect. Vendor it and override _config (see config.libsonnet):
//   (import 'pgjobs/mixin/mixin.libsonnet') + { _config+:: { groupLabels: ['cluster', 'namespace', 'job', 'instance'] } }
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet')
