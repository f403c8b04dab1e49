// SPDX-License-Identifier: Apache-2.0
// What a deployment changes: override these fields in `_config+::` when vendoring the mixin.
{
  _config+:: {
    // Selectors of the series of each binary, without braces, such as 'job="pgjobs-exporter"'
    // or 'namespace="queues"'. Empty: every series of that name, whatever the scrape job.
    exporterSelector: '',
    workerSelector: '',

    // The labels that tell one database (one exporter) from another. Every queue alert keeps
    // them, so that two databases raise two alerts and Alertmanager can route by them. Add
    // 'cluster' and 'namespace' when the targets carry them.
    groupLabels: ['job', 'instance'],
    // The labels that tell one pool of workers from another (a Deployment, a systemd template):
    // worker alerts are per pool and task, not per pod.
    workerGroupLabels: ['job'],

    // Thresholds.
    oldestReadyJobSeconds: 300,
    backlogMinimum: 100,
    failureRatio: 0.1,
    retriesPerSecond: 1,
    scheduleOverdueSeconds: 300,
    notificationQueueRatio: 0.5,
    longTransactionSeconds: 900,
    queueDeadTuples: 100000,
    // Fraction of a pool's workers down (scraped within the last hour, down now) that alerts.
    workerDownRatio: 0.25,
    // How long they must stay down: longer than a rolling restart takes.
    workerDownFor: '5m',
    // Whether to alert on workers down at all (off for pools that scale to zero by design).
    workerDownAlerts: true,

    // Where the alerts link to. runbook_url is runbookUrlBase + '#' + the alert's name in lower
    // case: the README's "Runbooks" section. Point both at your copy and your Grafana.
    runbookUrlBase: 'https://github.com/pgjobs/pgjobs/blob/main/README.md',
    grafanaUrl: 'http://localhost:3000',

    // Dashboards.
    dashboardTags: ['pgjobs'],
    dashboardRefresh: '30s',
    dashboardTimezone: 'browser',
  },
}
