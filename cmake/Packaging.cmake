# SPDX-License-Identifier: Apache-2.0
# Two Debian packages, built by `cpack -G DEB` in the build directory:
#   pgjobs      the binaries, systemd units (jobs-worker@.service, jobs-exporter.service),
#               /etc/pgjobs/*.yaml as conffiles, alert rules, dashboards and the mixin under
#               /usr/share/pgjobs, man pages; postinst makes the `pgjobs` system user.
#   pgjobs-dev  the worker and client libraries, their headers and CMake package.
# What lives outside the prefix (/etc, /lib/systemd) is in component `system`, which only the
# package installs: `cmake --install` into a prefix never writes there.

set(PGJOBS_PACKAGE_MAINTAINER "pgjobs maintainers <maintainers@pgjobs.invalid>"
    CACHE STRING "Maintainer field of the Debian packages")

# Data shared by users of either package.
install(FILES config/prometheus/alerts.yml DESTINATION ${CMAKE_INSTALL_DATADIR}/pgjobs/prometheus
        COMPONENT runtime)
install(DIRECTORY grafana/dashboards DESTINATION ${CMAKE_INSTALL_DATADIR}/pgjobs/grafana
        COMPONENT runtime)
install(DIRECTORY mixin/ DESTINATION ${CMAKE_INSTALL_DATADIR}/pgjobs/mixin COMPONENT runtime
        PATTERN generate EXCLUDE)
install(FILES config/worker.example.yaml config/exporter.example.yaml
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pgjobs/examples COMPONENT runtime)

# Documentation, as Debian wants it: copyright, a gzipped changelog, the README.
string(TIMESTAMP PGJOBS_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(deploy/debian/changelog.in ${CMAKE_CURRENT_BINARY_DIR}/debian/changelog @ONLY)
add_custom_command(
  OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/debian/changelog.gz
  COMMAND gzip -9nf -k ${CMAKE_CURRENT_BINARY_DIR}/debian/changelog
  DEPENDS ${CMAKE_CURRENT_BINARY_DIR}/debian/changelog)
set(docs ${CMAKE_CURRENT_BINARY_DIR}/debian/changelog.gz)
foreach(doc README.md CHANGELOG.md)
  add_custom_command(
    OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/debian/${doc}.gz
    COMMAND gzip -9n -c ${PROJECT_SOURCE_DIR}/${doc} > ${CMAKE_CURRENT_BINARY_DIR}/debian/${doc}.gz
    DEPENDS ${PROJECT_SOURCE_DIR}/${doc})
  list(APPEND docs ${CMAKE_CURRENT_BINARY_DIR}/debian/${doc}.gz)
endforeach()

# Man pages made from each binary's --help and --version, so that they cannot disagree.
find_program(HELP2MAN help2man)
set(man_pages "")
if(HELP2MAN AND NOT PGJOBS_SANITIZE)  # a sanitized binary is no package's
  set(summary_jobs-worker "run the jobs of a PostgreSQL job queue")
  set(summary_jobs-exporter "serve the statistics of a PostgreSQL job queue to Prometheus")
  set(summary_jobs-migrate "install or upgrade the pgjobs schema")
  set(summary_jobs-ctl "inspect and control the jobs of a pgjobs queue")
  foreach(binary jobs-worker jobs-exporter jobs-migrate jobs-ctl)
    add_custom_command(
      OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/man/${binary}.1.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/man
      COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section=1
              "--name=${summary_${binary}}" --output=${CMAKE_CURRENT_BINARY_DIR}/man/${binary}.1
              $<TARGET_FILE:${binary}>
      COMMAND gzip -9nf ${CMAKE_CURRENT_BINARY_DIR}/man/${binary}.1
      DEPENDS ${binary}
      VERBATIM)
    list(APPEND man_pages ${CMAKE_CURRENT_BINARY_DIR}/man/${binary}.1.gz)
  endforeach()
  install(FILES ${man_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT runtime)
endif()
add_custom_target(pgjobs_package_docs ALL DEPENDS ${docs} ${man_pages})
install(FILES ${docs} deploy/debian/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR}
        COMPONENT runtime)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/debian/changelog.gz deploy/debian/copyright
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/pgjobs-dev COMPONENT dev)

install(FILES deploy/systemd/jobs-worker@.service deploy/systemd/jobs-exporter.service
        DESTINATION /lib/systemd/system COMPONENT system EXCLUDE_FROM_ALL)
install(FILES config/worker.example.yaml RENAME worker.yaml DESTINATION /etc/pgjobs
        COMPONENT system EXCLUDE_FROM_ALL)
install(FILES config/exporter.example.yaml RENAME exporter.yaml DESTINATION /etc/pgjobs
        COMPONENT system EXCLUDE_FROM_ALL)

set(CPACK_PACKAGE_NAME pgjobs)
set(CPACK_PACKAGE_VENDOR "pgjobs")
set(CPACK_PACKAGE_CONTACT "${PGJOBS_PACKAGE_MAINTAINER}")
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPackDeb would put it before each package's own summary.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
set(CPACK_COMPONENTS_ALL runtime system dev)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${PGJOBS_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)

# runtime and system make one package, pgjobs; dev its own, pgjobs-dev.
include(CPackComponent)
cpack_add_component_group(main)
cpack_add_component_group(dev)
cpack_add_component(runtime GROUP main)
cpack_add_component(system GROUP main)
cpack_add_component(dev GROUP dev)
set(CPACK_DEBIAN_MAIN_PACKAGE_NAME pgjobs)
set(CPACK_DEBIAN_MAIN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_MAIN_PACKAGE_RECOMMENDS "postgresql-client, prometheus")
set(CPACK_DEBIAN_MAIN_DESCRIPTION
    "job queue in PostgreSQL, its worker and Prometheus exporter
pgjobs keeps a job queue in PostgreSQL (schema jobs: publish, consume, ack,
nack, retries with backoff, timeouts, priorities, schedules). This package
holds jobs-migrate, which installs the schema; jobs-worker, which runs the
jobs' handlers (commands, SQL, HTTP) and serves its metrics; jobs-exporter,
which serves the queue's statistics to Prometheus; jobs-ctl; systemd units;
alert rules, Grafana dashboards and the monitoring mixin.")
set(CPACK_DEBIAN_MAIN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/postrm
    ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME pgjobs-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libpq-dev, libyaml-cpp-dev, prometheus-cpp-dev, libcurl4-openssl-dev | libcurl-dev, libssl-dev")
set(CPACK_DEBIAN_DEV_DESCRIPTION
    "job queue in PostgreSQL: C++ worker and client libraries
The static libraries, headers and CMake package (find_package(pgjobs),
pgjobs::worker, pgjobs::client) for writing jobs-worker handlers in C++ and
publishing jobs from C++ programs.")
include(CPack)
