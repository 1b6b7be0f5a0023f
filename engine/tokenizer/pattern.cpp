#include "engine/tokenizer/pattern.h"

#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/unicode.h"

namespace sparkd::tokenizer {

Pattern Pattern::literal(std::string text) {
  Pattern p;
  p.kind_ = Kind::kLiteral;
  p.literal_ = std::move(text);
  return p;
}

Pattern Pattern::regex(const std::string& expression) {
  Pattern p;
  p.kind_ = Kind::kRegex;
  p.regex_ = std::make_shared<const Regex>(expression);
  return p;
}

Pattern Pattern::char_class(std::function<bool(char32_t)> predicate) {
  Pattern p;
  p.kind_ = Kind::kCharClass;
  p.predicate_ = std::move(predicate);
  return p;
}

Pattern Pattern::inverted() const {
  Pattern p = *this;
  p.invert_ = !invert_;
  return p;
}

std::vector<PatternMatch> Pattern::find_matches(std::string_view inside) const {
  std::vector<PatternMatch> out;
  if (inside.empty()) {
    out.push_back({{0, 0}, invert_});
    return out;
  }
  size_t prev = 0;
  auto on_match = [&](size_t begin, size_t end) {
    if (prev != begin) out.push_back({{prev, begin}, invert_});
    out.push_back({{begin, end}, !invert_});
    prev = end;
  };
  switch (kind_) {
    case Kind::kLiteral: {
      if (literal_.empty()) {  // the library treats an empty pattern as "never matches"
        out.push_back({{0, inside.size()}, invert_});
        return out;
      }
      size_t pos = 0;
      while ((pos = inside.find(literal_, pos)) != std::string_view::npos) {
        on_match(pos, pos + literal_.size());
        pos += literal_.size();
      }
      break;
    }
    case Kind::kRegex:
      regex_->for_each_match(inside, on_match);
      break;
    case Kind::kCharClass: {
      size_t pos = 0;
      while (pos < inside.size()) {
        size_t begin = pos;
        char32_t c = next_code_point(inside, &pos);
        if (predicate_(c)) on_match(begin, pos);
      }
      break;
    }
  }
  if (prev != inside.size()) out.push_back({{prev, inside.size()}, invert_});
  return out;
}

}  // namespace sparkd::tokenizer
