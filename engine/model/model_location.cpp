#include "engine/model/model_location.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "engine/model/gguf.h"

namespace sparkd::model {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kOllamaScheme = "ollama:";
constexpr std::string_view kHuggingFaceScheme = "hf:";
// Ollama's media type for the layer that is the model's weights (a GGUF file).
constexpr std::string_view kOllamaModelMediaType = "application/vnd.ollama.image.model";
// Manifests larger than this are not manifests.
constexpr uintmax_t kMaxManifestBytes = 1 << 20;

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : std::string();
}

std::string home_directory() {
  return environment("HOME");
}

Expected<std::string> read_small_file(const fs::path& path, const std::string& what) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) {
    return Status(StatusCode::kNotFound, what + ": " + path.string() + " not found");
  }
  if (size > kMaxManifestBytes) {
    return Status(StatusCode::kInvalidArgument, what + ": " + path.string() + " is " +
                                                    std::to_string(size) + " bytes, too large");
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) {
    return Status(StatusCode::kUnavailable, what + ": cannot read " + path.string());
  }
  return text.str();
}

// The GGUF model in `dir`: its only .gguf file, or the first part of its only split set.
Expected<std::string> single_gguf_in(const fs::path& dir) {
  static const std::regex split_part(R"(^(.*)-([0-9]{5})-of-([0-9]{5})\.gguf$)");
  std::set<std::string> models;  // file names, split sets as their first part
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_gguf_path(name)) continue;
    std::smatch match;
    if (std::regex_match(name, match, split_part)) {
      models.insert(match[1].str() + "-00001-of-" + match[3].str() + ".gguf");
    } else {
      models.insert(name);
    }
  }
  if (ec) {
    return Status(StatusCode::kUnavailable, "cannot list " + dir.string() + ": " + ec.message());
  }
  if (models.empty()) {
    return Status(StatusCode::kNotFound,
                  dir.string() +
                      " holds no model: neither config.json (a Hugging Face model) "
                      "nor a .gguf file");
  }
  if (models.size() > 1) {
    std::string names;
    for (const std::string& name : models) names += (names.empty() ? "" : ", ") + name;
    return Status(StatusCode::kInvalidArgument,
                  dir.string() + " holds " + std::to_string(models.size()) + " GGUF models (" +
                      names + "): name the file to load");
  }
  return (dir / *models.begin()).string();
}

Expected<ModelLocation> locate_path(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "config.json", ec)) {
      return ModelLocation{ModelFormat::kSafetensors, path};
    }
    SPARKD_ASSIGN_OR_RETURN(std::string file, single_gguf_in(path));
    return ModelLocation{ModelFormat::kGguf, file};
  }
  if (is_gguf_path(path)) {
    if (!fs::exists(path, ec)) {
      return Status(StatusCode::kNotFound, "model file " + path + " not found");
    }
    return ModelLocation{ModelFormat::kGguf, path};
  }
  if (!fs::exists(path, ec)) {
    return Status(StatusCode::kNotFound, "model directory " + path + " not found");
  }
  return Status(StatusCode::kInvalidArgument,
                path + " is neither a model directory nor a .gguf file");
}

// ollama:NAME[:TAG] -> the blob of its model layer.
Expected<ModelLocation> locate_ollama(const std::string& reference) {
  std::string name = reference.substr(kOllamaScheme.size());
  std::string tag = "latest";
  const size_t slash = name.rfind('/');
  const size_t colon = name.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    tag = name.substr(colon + 1);
    name.resize(colon);
  }
  static const std::regex component(R"(^[A-Za-z0-9][A-Za-z0-9._-]*$)");
  std::vector<std::string> parts;
  for (size_t begin = 0;;) {
    const size_t end = name.find('/', begin);
    parts.push_back(name.substr(begin, end - begin));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  const bool valid = !name.empty() && parts.size() <= 3 && std::regex_match(tag, component) &&
                     std::all_of(parts.begin(), parts.end(), [](const std::string& part) {
                       return std::regex_match(part, component);
                     });
  if (!valid) {
    return Status(StatusCode::kInvalidArgument,
                  "'" + reference +
                      "' is not an Ollama model reference: ollama:NAME[:TAG], "
                      "e.g. ollama:qwen2.5-coder:1.5b or ollama:NAMESPACE/NAME:TAG");
  }
  // Ollama's own name resolution: NAME -> registry.ollama.ai/library/NAME.
  if (parts.size() == 1) parts.insert(parts.begin(), "library");
  if (parts.size() == 2) parts.insert(parts.begin(), "registry.ollama.ai");

  std::string store = environment("OLLAMA_MODELS");
  if (store.empty()) store = (fs::path(home_directory()) / ".ollama" / "models").string();
  const fs::path manifest = fs::path(store) / "manifests" / parts[0] / parts[1] / parts[2] / tag;
  const std::string what = "Ollama model " + parts[1] + "/" + parts[2] + ":" + tag;
  SPARKD_ASSIGN_OR_RETURN(std::string text, read_small_file(manifest, what + " (manifest)"));
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("layers") || !json["layers"].is_array()) {
    return Status(StatusCode::kDataLoss, manifest.string() + ": not an Ollama manifest");
  }
  for (const nlohmann::json& layer : json["layers"]) {
    if (!layer.is_object() || layer.value("mediaType", "") != kOllamaModelMediaType) continue;
    const std::string digest = layer.value("digest", "");
    static const std::regex sha256(R"(^sha256[:-]([0-9a-f]{64})$)");
    std::smatch match;
    if (!std::regex_match(digest, match, sha256)) {
      return Status(StatusCode::kDataLoss, manifest.string() + ": the model layer's digest '" +
                                               digest + "' is not sha256:<64 hex digits>");
    }
    // Blobs are named sha256-<hex> (older stores: sha256:<hex>).
    for (const char* separator : {"-", ":"}) {
      const fs::path blob =
          fs::path(store) / "blobs" / ("sha256" + std::string(separator) + match[1].str());
      std::error_code ec;
      if (fs::is_regular_file(blob, ec)) return ModelLocation{ModelFormat::kGguf, blob.string()};
    }
    return Status(StatusCode::kNotFound, what + ": its manifest names blob " + digest +
                                             ", which is not in " + store + "/blobs");
  }
  return Status(StatusCode::kInvalidArgument,
                what + ": its manifest has no layer of type " + std::string(kOllamaModelMediaType));
}

// hf:ORG/NAME[@REVISION] -> the snapshot directory in the Hugging Face cache.
Expected<ModelLocation> locate_hugging_face(const std::string& reference) {
  std::string repo = reference.substr(kHuggingFaceScheme.size());
  std::string revision = "main";
  if (const size_t at = repo.find('@'); at != std::string::npos) {
    revision = repo.substr(at + 1);
    repo.resize(at);
  }
  static const std::regex repo_pattern(
      R"(^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$)");
  static const std::regex revision_pattern(R"(^[A-Za-z0-9][A-Za-z0-9._-]*$)");
  if (!std::regex_match(repo, repo_pattern) || !std::regex_match(revision, revision_pattern)) {
    return Status(StatusCode::kInvalidArgument,
                  "'" + reference + "' is not a Hugging Face reference: hf:ORG/NAME[@REVISION]");
  }
  std::string cache = environment("HF_HUB_CACHE");
  if (cache.empty() && !environment("HF_HOME").empty()) {
    cache = (fs::path(environment("HF_HOME")) / "hub").string();
  }
  if (cache.empty()) {
    cache = (fs::path(home_directory()) / ".cache" / "huggingface" / "hub").string();
  }
  std::string folder = "models--" + repo;
  folder.replace(folder.find('/'), 1, "--");
  const fs::path repo_dir = fs::path(cache) / folder;
  std::string commit = revision;
  static const std::regex commit_pattern(R"(^[0-9a-f]{40}$)");
  if (!std::regex_match(revision, commit_pattern)) {
    SPARKD_ASSIGN_OR_RETURN(std::string ref, read_small_file(repo_dir / "refs" / revision,
                                                             "Hugging Face model " + repo + "@" +
                                                                 revision + " (cache ref)"));
    commit = ref.substr(0, ref.find_first_of(" \r\n"));
    if (!std::regex_match(commit, commit_pattern)) {
      return Status(StatusCode::kDataLoss,
                    (repo_dir / "refs" / revision).string() + ": not a commit hash");
    }
  }
  const fs::path snapshot = repo_dir / "snapshots" / commit;
  std::error_code ec;
  if (!fs::is_directory(snapshot, ec)) {
    return Status(StatusCode::kNotFound, "Hugging Face model " + repo + "@" + revision +
                                             ": snapshot " + snapshot.string() + " not found");
  }
  return locate_path(snapshot.string());
}

}  // namespace

Expected<ModelLocation> locate_model(const std::string& reference) {
  if (reference.starts_with(kOllamaScheme)) return locate_ollama(reference);
  if (reference.starts_with(kHuggingFaceScheme)) return locate_hugging_face(reference);
  return locate_path(reference);
}

}  // namespace sparkd::model
