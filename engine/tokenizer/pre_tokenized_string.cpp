#include "engine/tokenizer/pre_tokenized_string.h"

namespace sparkd::tokenizer {

PreTokenizedString::PreTokenizedString(std::string_view original)
    : PreTokenizedString(NormalizedString(original)) {}

PreTokenizedString::PreTokenizedString(NormalizedString normalized) {
  splits_.push_back({std::move(normalized), std::nullopt});
}

void PreTokenizedString::split(
    const std::function<void(size_t, NormalizedString&&, std::vector<Split>*)>& fn) {
  std::vector<Split> next;
  next.reserve(splits_.size());
  std::vector<Split> produced;
  for (size_t i = 0; i < splits_.size(); ++i) {
    Split& split = splits_[i];
    if (split.tokens) {
      next.push_back(std::move(split));
      continue;
    }
    produced.clear();
    fn(i, std::move(split.normalized), &produced);
    for (Split& s : produced)
      if (!s.normalized.empty()) next.push_back(std::move(s));
  }
  splits_ = std::move(next);
}

void PreTokenizedString::split_normalized(
    const std::function<std::vector<NormalizedString>(size_t, NormalizedString&&)>& fn) {
  split([&](size_t i, NormalizedString&& s, std::vector<Split>* out) {
    for (NormalizedString& piece : fn(i, std::move(s)))
      out->push_back({std::move(piece), std::nullopt});
  });
}

void PreTokenizedString::normalize(const std::function<void(NormalizedString&)>& fn) {
  for (Split& split : splits_)
    if (!split.tokens) fn(split.normalized);
}

void PreTokenizedString::tokenize(
    const std::function<std::vector<Token>(const NormalizedString&)>& fn) {
  for (Split& split : splits_)
    if (!split.tokens) split.tokens = fn(split.normalized);
}

}  // namespace sparkd::tokenizer
