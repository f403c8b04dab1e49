// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgjobs/error.h"

namespace pgjobs::config {

/// A configuration error. what() reads "file:line:column: key.path: problem, got value".
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// Looks up an environment variable for ${NAME} expansion; std::nullopt when it is unset.
/// Injected so that nothing below main reads the environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

/// The longest duration a configuration may give.
inline constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 365);

/// Parses a duration such as "500ms", "30s", "1m30s", "2h" (units ms, s, m, h, d); pure.
/// std::nullopt when malformed or longer than kMaxDuration.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);

/// The Levenshtein-nearest of `candidates` to `word`, if within a third of its length; pure.
std::optional<std::string> NearestWord(std::string_view word,
                                       const std::vector<std::string>& candidates);

/// Expands ${NAME} references in `value`; throws ConfigError (with `where` as prefix) for an unset
/// variable or an unclosed reference. "$$" stands for a literal "$".
std::string ExpandEnv(const std::string& value, const EnvLookup& env, const std::string& where);

/// A YAML mapping being read. Every accessor records the key as known; Finish() then refuses the
/// keys nobody asked for, suggesting the nearest known one. Accessors return std::nullopt for an
/// absent key (or an explicit null), and throw ConfigError for a value of the wrong type.
class MapReader {
 public:
  /// Parses `text` (the contents of `file`); throws ConfigError with the position of a syntax
  /// error. An empty document reads as an empty mapping.
  static MapReader Parse(const std::string& text, const std::string& file, EnvLookup env);

  std::optional<std::string> String(const std::string& key);
  std::optional<long long> Integer(const std::string& key, long long min, long long max);
  std::optional<double> Number(const std::string& key);
  std::optional<bool> Bool(const std::string& key);
  /// A string that must be one of `choices`; the error lists them.
  std::optional<std::string> Choice(const std::string& key,
                                    const std::vector<std::string>& choices);
  std::optional<std::chrono::milliseconds> Duration(const std::string& key);
  std::optional<std::vector<std::string>> StringList(const std::string& key);
  /// A list of numbers, strictly ascending.
  std::optional<std::vector<double>> AscendingNumbers(const std::string& key);
  std::optional<MapReader> Map(const std::string& key);
  /// Any value, as JSON text: maps, lists, numbers, true/false, null and strings (a quoted
  /// scalar is always a string); ${VAR} is expanded in strings.
  std::optional<std::string> Json(const std::string& key);
  /// A list of mappings.
  std::optional<std::vector<MapReader>> MapList(const std::string& key);
  /// Every entry of a mapping whose keys are user-chosen names (tasks, users), in file order.
  std::vector<std::pair<std::string, MapReader>> Entries();
  /// The keys of this mapping, in file order, all marked known (for maps of user-chosen names to
  /// scalars, read then with String()).
  std::vector<std::string> Keys();
  /// Whether the key is present and not null.
  bool Has(const std::string& key) const;
  /// Refuses unknown keys: "file:l:c: path.key: unknown key (did you mean 'x'?)".
  void Finish() const;
  /// Throws ConfigError at `key` (its value's position, or the map's when absent).
  [[noreturn]] void Fail(const std::string& key, const std::string& problem) const;
  /// Throws ConfigError about this map itself, at its position.
  [[noreturn]] void FailHere(const std::string& problem) const;
  /// The dotted path of `key` in this map, for messages.
  std::string PathOf(const std::string& key) const;
  /// "file:line:column: path.key" for a problem found later (by the database, say).
  std::string Locate(const std::string& key) const;

 private:
  MapReader(const YAML::Node& node, std::shared_ptr<const std::pair<std::string, EnvLookup>> source,
            std::string path);
  std::optional<YAML::Node> Get(const std::string& key);
  std::string Where(const YAML::Node& node) const;
  std::string Scalar(const std::string& key, const YAML::Node& node, const char* expected) const;
  void AppendJson(const YAML::Node& node, const std::string& where, std::string& out) const;

  YAML::Node node_;
  std::shared_ptr<const std::pair<std::string, EnvLookup>> source_;  // file name, env lookup
  std::string path_;
  std::set<std::string> known_;
};

/// Describes a YAML node's kind for messages: "a map", "a list", "a string 'x'", "null".
std::string Describe(const YAML::Node& node);

}  // namespace pgjobs::config
