// SPDX-License-Identifier: Apache-2.0
#include "pgjobs/config/yaml_reader.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <regex>

#include "pgjobs/json_quote.h"

namespace pgjobs::config {

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    // A number: digits with at most one '.', and at least one digit.
    size_t end = i;
    int digits = 0;
    int dots = 0;
    for (; end < text.size(); ++end) {
      if (std::isdigit(static_cast<unsigned char>(text[end]))) {
        ++digits;
      } else if (text[end] == '.') {
        ++dots;
      } else {
        break;
      }
    }
    if (digits == 0 || dots > 1) return std::nullopt;
    const double number = std::strtod(std::string(text.substr(i, end - i)).c_str(), nullptr);
    size_t unit_end = end;
    while (unit_end < text.size() && std::isalpha(static_cast<unsigned char>(text[unit_end]))) {
      ++unit_end;
    }
    const std::string_view unit = text.substr(end, unit_end - end);
    double scale = 0;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60e3;
    } else if (unit == "h") {
      scale = 3600e3;
    } else if (unit == "d") {
      scale = 86400e3;
    } else {
      return std::nullopt;
    }
    total_ms += number * scale;
    i = unit_end;
  }
  // Past this a duration means nothing here, and its milliseconds would overflow.
  if (!std::isfinite(total_ms) || total_ms > static_cast<double>(kMaxDuration.count())) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<long long>(std::llround(total_ms)));
}

std::optional<std::string> NearestWord(std::string_view word,
                                       const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_distance = std::max<size_t>(1, word.size() / 3) + 1;
  for (const std::string& c : candidates) {
    std::vector<size_t> row(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        const size_t above = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (word[i - 1] != c[j - 1])});
        diagonal = above;
      }
    }
    if (row[c.size()] < best_distance) {
      best_distance = row[c.size()];
      best = c;
    }
  }
  return best;
}

std::string ExpandEnv(const std::string& value, const EnvLookup& env, const std::string& where) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '$') {
      out += value[i];
    } else if (i + 1 < value.size() && value[i + 1] == '$') {
      out += '$';
      ++i;
    } else if (i + 1 < value.size() && value[i + 1] == '{') {
      const size_t close = value.find('}', i + 2);
      if (close == std::string::npos) {
        throw ConfigError(where + "unclosed ${ in '" + value + "'");
      }
      const std::string name = value.substr(i + 2, close - i - 2);
      std::optional<std::string> found = env ? env(name) : std::nullopt;
      if (!found) throw ConfigError(where + "environment variable " + name + " is not set");
      out += *found;
      i = close;
    } else {
      out += '$';
    }
  }
  return out;
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    default:
      return "nothing";
  }
}

MapReader::MapReader(const YAML::Node& node,
                     std::shared_ptr<const std::pair<std::string, EnvLookup>> source,
                     std::string path)
    : node_(node), source_(std::move(source)), path_(std::move(path)) {}

MapReader MapReader::Parse(const std::string& text, const std::string& file, EnvLookup env) {
  auto source = std::make_shared<const std::pair<std::string, EnvLookup>>(file, std::move(env));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(file + ":" + std::to_string(e.mark.line + 1) + ":" +
                      std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    throw ConfigError(file + ":" + std::to_string(root.Mark().line + 1) + ":" +
                      std::to_string(root.Mark().column + 1) +
                      ": expected a map at the top level, got " + Describe(root));
  }
  return MapReader(root, source, "");
}

std::string MapReader::PathOf(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

std::string MapReader::Where(const YAML::Node& node) const {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return source_->first + ": ";
  return source_->first + ":" + std::to_string(mark.line + 1) + ":" +
         std::to_string(mark.column + 1) + ": ";
}

void MapReader::Fail(const std::string& key, const std::string& problem) const {
  const YAML::Node& node = node_;
  const YAML::Node value = node[key];
  throw ConfigError(Where(value.IsDefined() ? value : node_) + PathOf(key) + ": " + problem);
}

std::string MapReader::Locate(const std::string& key) const {
  const YAML::Node& node = node_;
  const YAML::Node value = node[key];
  return Where(value.IsDefined() ? value : node_) + PathOf(key);
}

namespace {

bool IsJsonNumber(const std::string& text) {
  static const std::regex kNumber(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
  return std::regex_match(text, kNumber);
}

}  // namespace

void MapReader::AppendJson(const YAML::Node& node, const std::string& where,
                           std::string& out) const {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      out += '{';
      bool first = true;
      for (const auto& kv : node) {
        if (!first) out += ", ";
        first = false;
        out += JsonQuote(kv.first.Scalar());
        out += ": ";
        AppendJson(kv.second, where, out);
      }
      out += '}';
      return;
    }
    case YAML::NodeType::Sequence: {
      out += '[';
      bool first = true;
      for (const auto& item : node) {
        if (!first) out += ", ";
        first = false;
        AppendJson(item, where, out);
      }
      out += ']';
      return;
    }
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (node.Tag() != "!") {  // plain, not quoted: may be a number or a boolean
        if (text == "true" || text == "false" || text == "null" || IsJsonNumber(text)) {
          out += text;
          return;
        }
      }
      out += JsonQuote(ExpandEnv(text, source_->second, where));
      return;
    }
    default:
      out += "null";
  }
}

std::optional<std::string> MapReader::Json(const std::string& key) {
  std::optional<YAML::Node> node = Get(key);
  if (!node) return std::nullopt;
  std::string out;
  AppendJson(*node, Where(*node) + PathOf(key) + ": ", out);
  return out;
}

void MapReader::FailHere(const std::string& problem) const {
  throw ConfigError(Where(node_) + path_ + ": " + problem);
}

bool MapReader::Has(const std::string& key) const {
  const YAML::Node& node = node_;
  const YAML::Node value = node[key];
  return value.IsDefined() && !value.IsNull();
}

std::optional<YAML::Node> MapReader::Get(const std::string& key) {
  known_.insert(key);
  // yaml-cpp's non-const operator[] inserts a null entry for a missing key; read through const.
  const YAML::Node& node = node_;
  const YAML::Node value = node[key];
  if (!value.IsDefined() || value.IsNull()) return std::nullopt;
  return value;
}

std::string MapReader::Scalar(const std::string& key, const YAML::Node& node,
                              const char* expected) const {
  if (!node.IsScalar()) Fail(key, std::string("expected ") + expected + ", got " + Describe(node));
  return ExpandEnv(node.Scalar(), source_->second, Where(node) + PathOf(key) + ": ");
}

std::optional<std::string> MapReader::String(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  return Scalar(key, node, "a string");
}

std::optional<long long> MapReader::Integer(const std::string& key, long long min, long long max) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  const std::string text = Scalar(key, node, "an integer");
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    Fail(key, "expected an integer, got '" + text + "'");
  }
  if (value < min || value > max) {
    Fail(key, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                  ", got " + text);
  }
  return value;
}

std::optional<double> MapReader::Number(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  const std::string text = Scalar(key, node, "a number");
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(value)) {
    Fail(key, "expected a number, got '" + text + "'");
  }
  return value;
}

std::optional<bool> MapReader::Bool(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  const std::string text = Scalar(key, node, "true or false");
  if (text == "true") return true;
  if (text == "false") return false;
  Fail(key, "expected true or false, got '" + text + "'");
}

std::optional<std::string> MapReader::Choice(const std::string& key,
                                             const std::vector<std::string>& choices) {
  std::optional<std::string> value = String(key);
  if (!value || std::find(choices.begin(), choices.end(), *value) != choices.end()) return value;
  std::string listed;
  for (const std::string& c : choices) listed += (listed.empty() ? "" : ", ") + c;
  Fail(key, "expected one of " + listed + ", got '" + *value + "'");
}

std::optional<std::chrono::milliseconds> MapReader::Duration(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  const std::string text = Scalar(key, node, "a duration");
  std::optional<std::chrono::milliseconds> value = ParseDuration(text);
  if (!value) {
    Fail(key, "expected a duration such as 500ms, 30s or 5m, up to 365d, got '" + text + "'");
  }
  return value;
}

std::optional<std::vector<std::string>> MapReader::StringList(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  if (!node.IsSequence()) Fail(key, "expected a list of strings, got " + Describe(node));
  std::vector<std::string> out;
  for (const YAML::Node& item : node) {
    if (!item.IsScalar())
      Fail(key, "expected a list of strings, got an item that is " + Describe(item));
    out.push_back(ExpandEnv(item.Scalar(), source_->second, Where(item) + PathOf(key) + ": "));
  }
  return out;
}

std::optional<std::vector<double>> MapReader::AscendingNumbers(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  if (!node.IsSequence()) Fail(key, "expected a list of numbers, got " + Describe(node));
  std::vector<double> out;
  std::string previous;
  for (const YAML::Node& item : node) {
    char* end = nullptr;
    const std::string text = item.IsScalar() ? item.Scalar() : "";
    const double value = std::strtod(text.c_str(), &end);
    if (!item.IsScalar() || text.empty() || *end != '\0' || !std::isfinite(value)) {
      Fail(key, "expected a list of numbers, got " + Describe(item));
    }
    if (!out.empty() && value <= out.back()) {
      Fail(key, "expected ascending numbers, got " + text + " after " + previous);
    }
    out.push_back(value);
    previous = text;
  }
  if (out.empty()) Fail(key, "expected at least one number, got an empty list");
  return out;
}

std::optional<MapReader> MapReader::Map(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  if (!node.IsMap()) Fail(key, "expected a map, got " + Describe(node));
  return MapReader(node, source_, PathOf(key));
}

std::optional<std::vector<MapReader>> MapReader::MapList(const std::string& key) {
  const std::optional<YAML::Node> found = Get(key);
  if (!found) return std::nullopt;
  const YAML::Node& node = *found;
  if (!node.IsSequence()) Fail(key, "expected a list of maps, got " + Describe(node));
  std::vector<MapReader> out;
  size_t index = 0;
  for (const YAML::Node& item : node) {
    const std::string path = PathOf(key) + "[" + std::to_string(index++) + "]";
    if (!item.IsMap()) {
      throw ConfigError(Where(item) + path + ": expected a map, got " + Describe(item));
    }
    out.push_back(MapReader(item, source_, path));
  }
  return out;
}

std::vector<std::pair<std::string, MapReader>> MapReader::Entries() {
  std::vector<std::pair<std::string, MapReader>> out;
  for (const auto& entry : node_) {
    const std::string name = entry.first.Scalar();
    known_.insert(name);
    if (!entry.second.IsMap()) {
      throw ConfigError(Where(entry.second) + PathOf(name) + ": expected a map, got " +
                        Describe(entry.second));
    }
    out.emplace_back(name, MapReader(entry.second, source_, PathOf(name)));
  }
  return out;
}

std::vector<std::string> MapReader::Keys() {
  std::vector<std::string> out;
  for (const auto& entry : node_) {
    out.push_back(entry.first.Scalar());
    known_.insert(out.back());
  }
  return out;
}

void MapReader::Finish() const {
  const std::vector<std::string> known(known_.begin(), known_.end());
  for (const auto& entry : node_) {
    const std::string key = entry.first.Scalar();
    if (known_.contains(key)) continue;
    std::string message = Where(entry.first) + PathOf(key) + ": unknown key";
    if (auto nearest = NearestWord(key, known)) message += " (did you mean '" + *nearest + "'?)";
    throw ConfigError(message);
  }
}

}  // namespace pgjobs::config
