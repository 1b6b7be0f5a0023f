// A Jinja template's syntax tree, and the lexer and parser that build it (parser.cpp). The
// lexer applies whitespace control as Hugging Face renders chat templates: trim_blocks (the
// newline after a block or comment tag is dropped) and lstrip_blocks (spaces and tabs before a
// block or comment tag on its own line are dropped), plus `-` and `+` on any tag.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/jinja/value.h"

namespace sparkd::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;
using KeywordArgs = std::vector<std::pair<std::string, ExprPtr>>;

struct Expr {
  enum class Kind {
    kLiteral,      // value
    kName,         // name
    kList,         // items (a tuple when is_tuple)
    kDict,         // items: key, value, key, value, ...
    kAttribute,    // operand.name
    kItem,         // operand[left]
    kSlice,        // operand[left:right:third], each may be null
    kCall,         // operand(items, keywords)
    kFilter,       // operand | name(items, keywords)
    kTest,         // operand is [not] name(items); negated
    kNot,          // not operand
    kNegate,       // -operand
    kPlus,         // +operand
    kBinary,       // left name right: or and == != < <= > >= in "not in" + - * / // % ** ~
    kConditional,  // left if operand else right (right may be null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  bool is_tuple = false;
  ExprPtr operand, left, right, third;
  std::vector<ExprPtr> items;
  KeywordArgs keywords;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Stmt {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // conditions[i] guards bodies[i]; else_body
    kFor,          // for targets in expr [if condition] bodies[0] [else else_body]
    kSet,          // set targets = expr, or set expr.name = value (attribute_target)
    kSetBlock,     // set targets[0] %} bodies[0] {% endset
    kMacro,        // macro name(params) bodies[0]
    kCallBlock,    // call expr (a call of a macro) with bodies[0] as caller()
    kFilterBlock,  // filter expr (a filter with a null operand) bodies[0]
    kBreak,
    kContinue,
    kScope,  // bodies[0] as it is: {% generation %}, {% with %}
  };
  Kind kind;
  int line = 0;
  std::string text;
  std::string name;
  std::vector<std::string> targets;
  ExprPtr expr, condition, attribute_object;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body else_body;
  std::vector<MacroParam> params;
  bool recursive = false;
};

// The template's statements; a TemplateError "line N: ..." for a syntax error.
Body parse_template(std::string_view source);

}  // namespace sparkd::jinja
