# SPDX-License-Identifier: Apache-2.0
# Writes OUTPUT, a C++ source defining pgjobs::migrate::BundledMigrations() from the SQL files in
# SOURCES (a ;-separated list of paths named NNN_name.sql, in version order). Run with cmake -P.
set(body "")
foreach(path IN LISTS SOURCES)
  get_filename_component(file "${path}" NAME_WE)
  string(REGEX MATCH "^([0-9]+)_(.+)$" matched "${file}")
  if(NOT matched)
    message(FATAL_ERROR "${path}: migration files are named NNN_name.sql")
  endif()
  math(EXPR version "${CMAKE_MATCH_1}")
  set(name "${CMAKE_MATCH_2}")
  file(READ "${path}" sql)
  string(FIND "${sql}" ")pgjobs_sql\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${path}: contains the raw-string delimiter )pgjobs_sql\"")
  endif()
  string(APPEND body "      {${version}, \"${name}\", R\"pgjobs_sql(${sql})pgjobs_sql\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" "// Generated from sql/*.sql by cmake/EmbedMigrations.cmake. Do not edit.\n"
  "#include \"pgjobs/migrate/migrator.h\"\n\n"
  "namespace pgjobs::migrate {\n\n"
  "const std::vector<Migration>& BundledMigrations() {\n"
  "  static const std::vector<Migration> kMigrations = {\n${body}  };\n"
  "  return kMigrations;\n}\n\n}  // namespace pgjobs::migrate\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
