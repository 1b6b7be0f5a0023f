// Lexer and recursive-descent parser for the Jinja2 subset chat templates use, following
// jinja2's own lexer.py and parser.py: the same tokens, whitespace control and operator
// precedence (or < and < not < comparisons < + - < ~ < * / // % < ** < unary - + < postfix,
// filters and tests).
#include <cctype>
#include <cstdlib>
#include <string>

#include "engine/jinja/python_text.h"
#include "engine/jinja/syntax.h"

namespace sparkd::jinja {
namespace {

enum class TokenKind {
  kText,
  kVariableBegin,
  kVariableEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInteger,
  kFloat,
  kOperator,
  kEnd,
};

struct Token {
  TokenKind kind;
  std::string text;  // text data, name, operator, or the decoded string literal
  int line;
};

[[noreturn]] void syntax_error(int line, const std::string& message) {
  throw TemplateError("line " + std::to_string(line) + ": " + message);
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : source_(source) {}

  std::vector<Token> run() {
    while (pos_ < source_.size()) {
      const size_t tag = find_tag(pos_);
      const size_t text_start = pos_;
      std::string text(source_.substr(pos_, tag - pos_));
      count_lines(text_start, tag);
      pos_ = tag;
      if (tag == source_.size()) {
        emit_text(std::move(text));
        break;
      }
      const char opener = source_[tag + 1];  // '{', '%' or '#'
      const char sign = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
      if (sign == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (sign != '+' && opener != '{') {
        lstrip_line(text, text_start);
      }
      emit_text(std::move(text));
      pos_ = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (opener == '#') {
        skip_comment();
      } else if (opener == '{') {
        tokens_.push_back({TokenKind::kVariableBegin, "", line_});
        tokenize_tag("}}");
      } else {
        lex_block();
      }
    }
    tokens_.push_back({TokenKind::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < source_.size(); ++i) {
      if (source_[i] == '{' &&
          (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#')) {
        return i;
      }
    }
    return source_.size();
  }

  void count_lines(size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) line_ += source_[i] == '\n';
  }

  // lstrip_blocks: drop the spaces and tabs between the line's start and a block tag, when
  // nothing else precedes the tag on its line.
  void lstrip_line(std::string& text, size_t text_start) const {
    const size_t newline = text.rfind('\n');
    const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    const bool line_starting = text_start == 0 || source_[text_start - 1] == '\n';
    if (newline == std::string::npos && !line_starting) return;
    for (size_t i = line_start; i < text.size(); ++i) {
      if (!is_space(text[i])) return;
    }
    text.resize(line_start);
  }

  void emit_text(std::string text) {
    if (text.empty()) return;
    tokens_.push_back({TokenKind::kText, std::move(text), line_});
  }

  // After a block or comment tag: `-` strips all following whitespace, `+` nothing, else
  // trim_blocks drops one newline.
  void after_block_end(char sign) {
    if (sign == '-') {
      while (pos_ < source_.size() && is_space(source_[pos_])) {
        line_ += source_[pos_] == '\n';
        ++pos_;
      }
    } else if (sign != '+' && pos_ < source_.size() && source_[pos_] == '\n') {
      ++line_;
      ++pos_;
    }
  }

  void skip_comment() {
    const size_t end = source_.find("#}", pos_);
    if (end == std::string_view::npos) syntax_error(line_, "unclosed comment");
    count_lines(pos_, end);
    const char sign = end > pos_ ? source_[end - 1] : '\0';
    pos_ = end + 2;
    after_block_end(sign);
  }

  void lex_block() {
    // {% raw %} ... {% endraw %}: the text between, verbatim.
    size_t probe = pos_;
    while (probe < source_.size() && is_space(source_[probe])) ++probe;
    if (source_.compare(probe, 3, "raw") == 0) {
      size_t after = probe + 3;
      while (after < source_.size() && is_space(source_[after])) ++after;
      const char sign = after < source_.size() ? source_[after] : '\0';
      const size_t close = after + (sign == '-' || sign == '+' ? 1 : 0);
      if (source_.compare(close, 2, "%}") == 0) {
        lex_raw(close + 2, sign == '-');
        return;
      }
    }
    tokens_.push_back({TokenKind::kBlockBegin, "", line_});
    tokenize_tag("%}");
  }

  void lex_raw(size_t content_start, bool strip_leading) {
    size_t search = content_start;
    while (true) {
      const size_t tag = source_.find("{%", search);
      if (tag == std::string_view::npos) syntax_error(line_, "unclosed {% raw %} block");
      size_t p = tag + 2;
      const bool strip_trailing = p < source_.size() && source_[p] == '-';
      if (p < source_.size() && (source_[p] == '-' || source_[p] == '+')) ++p;
      while (p < source_.size() && is_space(source_[p])) ++p;
      if (source_.compare(p, 6, "endraw") != 0) {
        search = tag + 2;
        continue;
      }
      p += 6;
      while (p < source_.size() && is_space(source_[p])) ++p;
      const char sign = p < source_.size() ? source_[p] : '\0';
      if (sign == '-' || sign == '+') ++p;
      if (source_.compare(p, 2, "%}") != 0) syntax_error(line_, "malformed {% endraw %}");
      std::string text(source_.substr(content_start, tag - content_start));
      if (strip_leading) {
        size_t first = 0;
        while (first < text.size() && is_space(text[first])) ++first;
        text.erase(0, first);
      }
      if (strip_trailing) {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      }
      count_lines(pos_, p + 2);
      emit_text(std::move(text));
      pos_ = p + 2;
      after_block_end(sign);
      return;
    }
  }

  // Tokens up to the closing delimiter ("}}" or "%}", optionally preceded by - or +).
  void tokenize_tag(std::string_view closer) {
    const bool block = closer == "%}";
    while (true) {
      while (pos_ < source_.size() && is_space(source_[pos_])) {
        line_ += source_[pos_] == '\n';
        ++pos_;
      }
      if (pos_ >= source_.size()) {
        syntax_error(line_, std::string("unexpected end of template, expected '") +
                                std::string(closer) + "'");
      }
      const char c = source_[pos_];
      const char sign = (c == '-' || c == '+') ? c : '\0';
      const size_t close_at = pos_ + (sign ? 1 : 0);
      if (source_.compare(close_at, 2, closer) == 0 && (sign != '+' || block)) {
        pos_ = close_at + 2;
        if (block) {
          tokens_.push_back({TokenKind::kBlockEnd, "", line_});
          after_block_end(sign);
        } else {
          tokens_.push_back({TokenKind::kVariableEnd, "", line_});
          if (sign == '-') after_block_end('-');
        }
        return;
      }
      if (c == '\'' || c == '"') {
        tokens_.push_back({TokenKind::kString, lex_string(c), line_});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        const size_t start = pos_;
        while (pos_ < source_.size() &&
               (std::isalnum(static_cast<unsigned char>(source_[pos_])) || source_[pos_] == '_')) {
          ++pos_;
        }
        tokens_.push_back(
            {TokenKind::kName, std::string(source_.substr(start, pos_ - start)), line_});
      } else {
        lex_operator();
      }
    }
  }

  std::string lex_string(char quote) {
    std::string value;
    ++pos_;
    while (true) {
      if (pos_ >= source_.size()) syntax_error(line_, "unterminated string literal");
      const char c = source_[pos_++];
      if (c == quote) return value;
      if (c == '\n') ++line_;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= source_.size()) syntax_error(line_, "unterminated string literal");
      const char e = source_[pos_++];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case '0':
          value += '\0';
          break;
        case '\\':
        case '\'':
        case '"':
          value += e;
          break;
        case '\n':
          ++line_;  // a line continuation
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos_ + digits > source_.size())
            syntax_error(line_, "truncated \\" + std::string(1, e) + " escape");
          const std::string hex(source_.substr(pos_, digits));
          char* end = nullptr;
          const unsigned long code_point = std::strtoul(hex.c_str(), &end, 16);
          if (end != hex.c_str() + digits)
            syntax_error(line_, "bad \\" + std::string(1, e) + " escape");
          pos_ += digits;
          append_utf8(static_cast<char32_t>(code_point), value);
          break;
        }
        default:  // Python keeps unknown escapes as they are
          value += '\\';
          value += e;
      }
    }
  }

  void lex_number() {
    const size_t start = pos_;
    bool is_float = false;
    while (pos_ < source_.size() &&
           (std::isdigit(static_cast<unsigned char>(source_[pos_])) || source_[pos_] == '_')) {
      ++pos_;
    }
    if (pos_ + 1 < source_.size() && source_[pos_] == '.' &&
        std::isdigit(static_cast<unsigned char>(source_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      while (pos_ < source_.size() && std::isdigit(static_cast<unsigned char>(source_[pos_])))
        ++pos_;
    }
    if (pos_ < source_.size() && (source_[pos_] == 'e' || source_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < source_.size() && (source_[p] == '+' || source_[p] == '-')) ++p;
      if (p < source_.size() && std::isdigit(static_cast<unsigned char>(source_[p]))) {
        is_float = true;
        pos_ = p;
        while (pos_ < source_.size() && std::isdigit(static_cast<unsigned char>(source_[pos_])))
          ++pos_;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (source_[i] != '_') text += source_[i];
    }
    tokens_.push_back({is_float ? TokenKind::kFloat : TokenKind::kInteger, text, line_});
  }

  void lex_operator() {
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwoChar) {
      if (source_.compare(pos_, 2, op) == 0) {
        tokens_.push_back({TokenKind::kOperator, std::string(op), line_});
        pos_ += 2;
        return;
      }
    }
    const char c = source_[pos_];
    if (std::string_view("+-*/%~<>=.,:|()[]{}").find(c) == std::string_view::npos) {
      syntax_error(line_, std::string("unexpected character '") + c + "'");
    }
    tokens_.push_back({TokenKind::kOperator, std::string(1, c), line_});
    ++pos_;
  }

  std::string_view source_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse() {
    Body body = parse_body({});
    if (peek().kind != TokenKind::kEnd) syntax_error(peek().line, "unexpected tokens");
    return body;
  }

 private:
  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() { return tokens_[std::min(pos_++, tokens_.size() - 1)]; }
  bool at_operator(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kOperator && peek(ahead).text == op;
  }
  bool at_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kName && peek(ahead).text == name;
  }
  bool accept_operator(std::string_view op) {
    if (!at_operator(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(std::string_view name) {
    if (!at_name(name)) return false;
    ++pos_;
    return true;
  }
  static std::string describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::kEnd:
        return "end of template";
      case TokenKind::kBlockEnd:
        return "end of statement block";
      case TokenKind::kVariableEnd:
        return "end of print statement";
      case TokenKind::kString:
        return "string";
      default:
        return "'" + token.text + "'";
    }
  }
  void expect_operator(std::string_view op) {
    if (!accept_operator(op)) {
      syntax_error(peek().line, "expected '" + std::string(op) + "', got " + describe(peek()));
    }
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::kName) {
      syntax_error(peek().line, "expected a name, got " + describe(peek()));
    }
    return next().text;
  }
  void expect(TokenKind kind) {
    if (peek().kind != kind) {
      syntax_error(peek().line, "unexpected " + describe(peek()));
    }
    ++pos_;
  }

  // Statements until a block tag whose keyword is in `terminators` (left unconsumed, after its
  // {%), or the end of the template when there are none.
  Body parse_body(const std::vector<std::string_view>& terminators) {
    Body body;
    while (true) {
      const Token& token = peek();
      if (token.kind == TokenKind::kEnd) {
        if (!terminators.empty()) {
          std::string expected;
          for (std::string_view t : terminators)
            expected += (expected.empty() ? "'" : " or '") + std::string(t) + "'";
          syntax_error(token.line, "unexpected end of template, expected " + expected);
        }
        return body;
      }
      if (token.kind == TokenKind::kText) {
        auto stmt = make_stmt(Stmt::Kind::kText, token.line);
        stmt->text = next().text;
        body.push_back(std::move(stmt));
        continue;
      }
      if (token.kind == TokenKind::kVariableBegin) {
        next();
        auto stmt = make_stmt(Stmt::Kind::kOutput, token.line);
        stmt->expr = parse_expression();
        expect(TokenKind::kVariableEnd);
        body.push_back(std::move(stmt));
        continue;
      }
      expect(TokenKind::kBlockBegin);
      const Token& keyword = peek();
      if (keyword.kind != TokenKind::kName)
        syntax_error(keyword.line, "expected a statement keyword");
      for (std::string_view t : terminators) {
        if (keyword.text == t) return body;
      }
      body.push_back(parse_statement());
    }
  }

  static StmtPtr make_stmt(Stmt::Kind kind, int line) {
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = kind;
    stmt->line = line;
    return stmt;
  }

  StmtPtr parse_statement() {
    const Token keyword = next();
    const std::string& k = keyword.text;
    if (k == "if") return parse_if(keyword.line);
    if (k == "for") return parse_for(keyword.line);
    if (k == "set") return parse_set(keyword.line);
    if (k == "macro") return parse_macro(keyword.line);
    if (k == "call") return parse_call_block(keyword.line);
    if (k == "filter") return parse_filter_block(keyword.line);
    if (k == "break" || k == "continue") {
      expect(TokenKind::kBlockEnd);
      return make_stmt(k == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, keyword.line);
    }
    if (k == "generation" || k == "with") {
      // {% generation %} (transformers' AssistantTracker) renders its body; {% with %} without
      // assignments is only a scope.
      if (k == "with" && peek().kind != TokenKind::kBlockEnd) {
        syntax_error(keyword.line, "{% with %} with assignments is not supported");
      }
      expect(TokenKind::kBlockEnd);
      auto stmt = make_stmt(Stmt::Kind::kScope, keyword.line);
      stmt->bodies.push_back(parse_body({"end" + k}));
      end_tag("end" + k);
      return stmt;
    }
    syntax_error(keyword.line, "unsupported statement '" + k + "'");
  }

  void end_tag(const std::string& name) {
    if (!accept_name(name)) syntax_error(peek().line, "expected '" + name + "'");
    expect(TokenKind::kBlockEnd);
  }

  StmtPtr parse_if(int line) {
    auto stmt = make_stmt(Stmt::Kind::kIf, line);
    stmt->conditions.push_back(parse_expression());
    expect(TokenKind::kBlockEnd);
    stmt->bodies.push_back(parse_body({"elif", "else", "endif"}));
    while (true) {
      const std::string keyword = next().text;
      if (keyword == "elif") {
        stmt->conditions.push_back(parse_expression());
        expect(TokenKind::kBlockEnd);
        stmt->bodies.push_back(parse_body({"elif", "else", "endif"}));
      } else if (keyword == "else") {
        expect(TokenKind::kBlockEnd);
        stmt->else_body = parse_body({"endif"});
        end_tag("endif");
        return stmt;
      } else {
        expect(TokenKind::kBlockEnd);
        return stmt;
      }
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> targets;
    const bool parenthesized = accept_operator("(");
    targets.push_back(expect_name());
    while (accept_operator(",")) {
      if (peek().kind != TokenKind::kName) break;
      targets.push_back(expect_name());
    }
    if (parenthesized) expect_operator(")");
    return targets;
  }

  StmtPtr parse_for(int line) {
    auto stmt = make_stmt(Stmt::Kind::kFor, line);
    stmt->targets = parse_targets();
    if (!accept_name("in")) syntax_error(peek().line, "expected 'in' in for loop");
    stmt->expr = parse_or_test(/*allow_conditional=*/false);
    if (accept_name("if")) stmt->condition = parse_expression();
    stmt->recursive = accept_name("recursive");
    expect(TokenKind::kBlockEnd);
    stmt->bodies.push_back(parse_body({"else", "endfor"}));
    if (next().text == "else") {
      expect(TokenKind::kBlockEnd);
      stmt->else_body = parse_body({"endfor"});
      end_tag("endfor");
    } else {
      expect(TokenKind::kBlockEnd);
    }
    return stmt;
  }

  StmtPtr parse_set(int line) {
    // set ns.attr = value
    if (peek().kind == TokenKind::kName && at_operator(".", 1)) {
      auto stmt = make_stmt(Stmt::Kind::kSet, line);
      auto object = std::make_unique<Expr>();
      object->kind = Expr::Kind::kName;
      object->line = line;
      object->name = next().text;
      next();  // .
      stmt->attribute_object = std::move(object);
      stmt->name = expect_name();
      expect_operator("=");
      stmt->expr = parse_tuple_or_expression();
      expect(TokenKind::kBlockEnd);
      return stmt;
    }
    std::vector<std::string> targets = parse_targets();
    if (peek().kind == TokenKind::kBlockEnd) {
      next();
      auto stmt = make_stmt(Stmt::Kind::kSetBlock, line);
      stmt->targets = std::move(targets);
      stmt->bodies.push_back(parse_body({"endset"}));
      end_tag("endset");
      return stmt;
    }
    auto stmt = make_stmt(Stmt::Kind::kSet, line);
    stmt->targets = std::move(targets);
    expect_operator("=");
    stmt->expr = parse_tuple_or_expression();
    expect(TokenKind::kBlockEnd);
    return stmt;
  }

  StmtPtr parse_macro(int line) {
    auto stmt = make_stmt(Stmt::Kind::kMacro, line);
    stmt->name = expect_name();
    expect_operator("(");
    while (!accept_operator(")")) {
      if (!stmt->params.empty()) expect_operator(",");
      if (accept_operator(")")) break;
      MacroParam param;
      param.name = expect_name();
      if (accept_operator("=")) param.default_value = parse_expression();
      stmt->params.push_back(std::move(param));
    }
    expect(TokenKind::kBlockEnd);
    stmt->bodies.push_back(parse_body({"endmacro"}));
    end_tag("endmacro");
    return stmt;
  }

  StmtPtr parse_call_block(int line) {
    auto stmt = make_stmt(Stmt::Kind::kCallBlock, line);
    stmt->expr = parse_expression();
    if (stmt->expr->kind != Expr::Kind::kCall) syntax_error(line, "expected a call after 'call'");
    expect(TokenKind::kBlockEnd);
    stmt->bodies.push_back(parse_body({"endcall"}));
    end_tag("endcall");
    return stmt;
  }

  StmtPtr parse_filter_block(int line) {
    auto stmt = make_stmt(Stmt::Kind::kFilterBlock, line);
    stmt->expr = parse_filter(nullptr);
    while (accept_operator("|")) stmt->expr = parse_filter(std::move(stmt->expr));
    expect(TokenKind::kBlockEnd);
    stmt->bodies.push_back(parse_body({"endfilter"}));
    end_tag("endfilter");
    return stmt;
  }

  // ---- expressions ----------------------------------------------------------------------

  ExprPtr make_expr(Expr::Kind kind, int line) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->line = line;
    return expr;
  }

  ExprPtr binary(std::string op, ExprPtr left, ExprPtr right) {
    auto expr = make_expr(Expr::Kind::kBinary, left->line);
    expr->name = std::move(op);
    expr->left = std::move(left);
    expr->right = std::move(right);
    return expr;
  }

  // `a, b` at statement level (set x = 1, 2) is a tuple.
  ExprPtr parse_tuple_or_expression() {
    ExprPtr first = parse_expression();
    if (!at_operator(",")) return first;
    auto tuple = make_expr(Expr::Kind::kList, first->line);
    tuple->is_tuple = true;
    tuple->items.push_back(std::move(first));
    while (accept_operator(",")) {
      if (peek().kind == TokenKind::kBlockEnd) break;
      tuple->items.push_back(parse_expression());
    }
    return tuple;
  }

  ExprPtr parse_expression() { return parse_or_test(/*allow_conditional=*/true); }

  ExprPtr parse_or_test(bool allow_conditional) {
    ExprPtr expr = parse_or();
    while (allow_conditional && at_name("if")) {
      next();
      auto conditional = make_expr(Expr::Kind::kConditional, expr->line);
      conditional->operand = parse_or();
      conditional->left = std::move(expr);
      if (accept_name("else")) conditional->right = parse_or_test(true);
      expr = std::move(conditional);
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (accept_name("or")) left = binary("or", std::move(left), parse_and());
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (accept_name("and")) left = binary("and", std::move(left), parse_not());
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      const int line = next().line;
      auto expr = make_expr(Expr::Kind::kNot, line);
      expr->operand = parse_not();
      return expr;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr left = parse_math1();
    while (true) {
      static constexpr std::string_view kComparisons[] = {"==", "!=", "<", "<=", ">", ">="};
      bool matched = false;
      for (std::string_view op : kComparisons) {
        if (at_operator(op)) {
          next();
          left = binary(std::string(op), std::move(left), parse_math1());
          matched = true;
          break;
        }
      }
      if (matched) continue;
      if (accept_name("in")) {
        left = binary("in", std::move(left), parse_math1());
      } else if (at_name("not") && at_name("in", 1)) {
        pos_ += 2;
        left = binary("not in", std::move(left), parse_math1());
      } else {
        return left;
      }
    }
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_operator("+") || at_operator("-")) {
      const std::string op = next().text;
      left = binary(op, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (accept_operator("~")) left = binary("~", std::move(left), parse_math2());
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_operator("*") || at_operator("/") || at_operator("//") || at_operator("%")) {
      const std::string op = next().text;
      left = binary(op, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (accept_operator("**")) left = binary("**", std::move(left), parse_unary(true));
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr expr;
    if (at_operator("-") || at_operator("+")) {
      const Token& op = next();
      expr = make_expr(op.text == "-" ? Expr::Kind::kNegate : Expr::Kind::kPlus, op.line);
      expr->operand = parse_unary(false);
    } else {
      expr = parse_primary();
    }
    expr = parse_postfix(std::move(expr));
    if (with_filter) expr = parse_filter_expr(std::move(expr));
    return expr;
  }

  ExprPtr parse_primary() {
    const Token& token = peek();
    switch (token.kind) {
      case TokenKind::kName: {
        next();
        auto expr = make_expr(Expr::Kind::kLiteral, token.line);
        if (token.text == "true" || token.text == "True") {
          expr->value = Value(true);
        } else if (token.text == "false" || token.text == "False") {
          expr->value = Value(false);
        } else if (token.text == "none" || token.text == "None") {
          expr->value = Value::none();
        } else {
          expr->kind = Expr::Kind::kName;
          expr->name = token.text;
        }
        return expr;
      }
      case TokenKind::kString: {
        std::string text = next().text;
        while (peek().kind == TokenKind::kString) text += next().text;  // "a" "b" is "ab"
        auto expr = make_expr(Expr::Kind::kLiteral, token.line);
        expr->value = Value(std::move(text));
        return expr;
      }
      case TokenKind::kInteger: {
        auto expr = make_expr(Expr::Kind::kLiteral, token.line);
        expr->value = Value(static_cast<int64_t>(std::strtoll(next().text.c_str(), nullptr, 10)));
        return expr;
      }
      case TokenKind::kFloat: {
        auto expr = make_expr(Expr::Kind::kLiteral, token.line);
        expr->value = Value(std::strtod(next().text.c_str(), nullptr));
        return expr;
      }
      case TokenKind::kOperator:
        if (token.text == "(") return parse_parenthesized();
        if (token.text == "[") return parse_list();
        if (token.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    syntax_error(token.line, "unexpected " + describe(token));
  }

  ExprPtr parse_parenthesized() {
    const int line = next().line;
    if (accept_operator(")")) {
      auto tuple = make_expr(Expr::Kind::kList, line);
      tuple->is_tuple = true;
      return tuple;
    }
    ExprPtr first = parse_expression();
    if (accept_operator(")")) return first;
    auto tuple = make_expr(Expr::Kind::kList, line);
    tuple->is_tuple = true;
    tuple->items.push_back(std::move(first));
    while (accept_operator(",")) {
      if (at_operator(")")) break;
      tuple->items.push_back(parse_expression());
    }
    expect_operator(")");
    return tuple;
  }

  ExprPtr parse_list() {
    auto list = make_expr(Expr::Kind::kList, next().line);
    while (!accept_operator("]")) {
      if (!list->items.empty()) expect_operator(",");
      if (accept_operator("]")) break;
      list->items.push_back(parse_expression());
    }
    return list;
  }

  ExprPtr parse_dict() {
    auto dict = make_expr(Expr::Kind::kDict, next().line);
    while (!accept_operator("}")) {
      if (!dict->items.empty()) expect_operator(",");
      if (accept_operator("}")) break;
      dict->items.push_back(parse_expression());
      expect_operator(":");
      dict->items.push_back(parse_expression());
    }
    return dict;
  }

  ExprPtr parse_postfix(ExprPtr expr) {
    while (true) {
      if (at_operator(".")) {
        const int line = next().line;
        auto attribute = make_expr(Expr::Kind::kAttribute, line);
        if (peek().kind == TokenKind::kInteger) {  // x.0 is x[0]
          attribute->kind = Expr::Kind::kItem;
          attribute->left = make_expr(Expr::Kind::kLiteral, line);
          attribute->left->value =
              Value(static_cast<int64_t>(std::strtoll(next().text.c_str(), nullptr, 10)));
        } else {
          attribute->name = expect_name();
        }
        attribute->operand = std::move(expr);
        expr = std::move(attribute);
      } else if (at_operator("[")) {
        expr = parse_subscript(std::move(expr));
      } else if (at_operator("(")) {
        expr = parse_call(std::move(expr));
      } else {
        return expr;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object) {
    const int line = next().line;
    ExprPtr parts[3];
    int colons = 0;
    while (!accept_operator("]")) {
      if (accept_operator(":")) {
        if (++colons > 2) syntax_error(line, "too many ':' in a slice");
        continue;
      }
      if (parts[colons]) syntax_error(line, "expected ']' or ':'");
      parts[colons] = parse_expression();
    }
    if (colons == 0) {
      if (!parts[0]) syntax_error(line, "empty subscript");
      auto item = make_expr(Expr::Kind::kItem, line);
      item->operand = std::move(object);
      item->left = std::move(parts[0]);
      return item;
    }
    auto slice = make_expr(Expr::Kind::kSlice, line);
    slice->operand = std::move(object);
    slice->left = std::move(parts[0]);
    slice->right = std::move(parts[1]);
    slice->third = std::move(parts[2]);
    return slice;
  }

  // (args, key=value, ...) into expr->items and expr->keywords.
  void parse_arguments(Expr& expr) {
    expect_operator("(");
    while (!accept_operator(")")) {
      if (!expr.items.empty() || !expr.keywords.empty()) expect_operator(",");
      if (accept_operator(")")) break;
      if (peek().kind == TokenKind::kName && at_operator("=", 1)) {
        std::string name = next().text;
        next();
        expr.keywords.emplace_back(std::move(name), parse_expression());
      } else {
        if (!expr.keywords.empty())
          syntax_error(peek().line, "positional argument after keyword argument");
        expr.items.push_back(parse_expression());
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto call = make_expr(Expr::Kind::kCall, callee->line);
    parse_arguments(*call);
    call->operand = std::move(callee);
    return call;
  }

  ExprPtr parse_filter(ExprPtr operand) {
    auto filter = make_expr(Expr::Kind::kFilter, peek().line);
    filter->name = expect_name();
    while (accept_operator(".")) filter->name += "." + expect_name();
    if (at_operator("(")) parse_arguments(*filter);
    filter->operand = std::move(operand);
    return filter;
  }

  ExprPtr parse_filter_expr(ExprPtr expr) {
    while (true) {
      if (accept_operator("|")) {
        expr = parse_filter(std::move(expr));
      } else if (at_name("is")) {
        const int line = next().line;
        auto test = make_expr(Expr::Kind::kTest, line);
        test->negated = accept_name("not");
        test->name = expect_name();
        if (at_operator("(")) {
          parse_arguments(*test);
        } else if (starts_test_argument()) {
          test->items.push_back(parse_unary(false));
        }
        test->operand = std::move(expr);
        expr = std::move(test);
      } else {
        return expr;
      }
    }
  }

  // `x is divisibleby 3`: a test takes one argument without parentheses when a primary follows.
  bool starts_test_argument() const {
    const Token& token = peek();
    switch (token.kind) {
      case TokenKind::kString:
      case TokenKind::kInteger:
      case TokenKind::kFloat:
        return true;
      case TokenKind::kName:
        return token.text != "else" && token.text != "or" && token.text != "and" &&
               token.text != "if" && token.text != "in" && token.text != "is" &&
               token.text != "not" && token.text != "recursive";
      case TokenKind::kOperator:
        return token.text == "[" || token.text == "{" || token.text == "-";
      default:
        return false;
    }
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

Body parse_template(std::string_view source) {
  return Parser(Lexer(source).run()).parse();
}

}  // namespace sparkd::jinja
