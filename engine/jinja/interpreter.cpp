// Renders a parsed template: statements write to one output string; expressions evaluate to
// Values with Python's semantics. Scopes follow jinja2: a for loop's body (and a macro call)
// gets its own frame, so `set` inside a loop does not leak out of it (templates use
// namespace() for that); if blocks share their enclosing frame; macros see the template's
// top-level names at call time.
#include <algorithm>
#include <cmath>

#include "engine/jinja/builtins.h"
#include "engine/jinja/syntax.h"
#include "engine/jinja/template.h"

namespace sparkd::jinja {
namespace {

// Loops and macros nested deeper than this are refused (a recursive macro without a base case).
constexpr int kMaxDepth = 200;

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  Interpreter(const Value& context, const RenderOptions& options)
      : max_output_bytes_(options.max_output_bytes), steps_left_(options.max_steps) {
    frames_.push_back(make_globals(options.clock));
    Dict root;
    if (context.is_dict()) root = context.as_dict();
    root.is_namespace = false;
    frames_.push_back(std::move(root));
  }

  std::string render(const Body& body) {
    const BuiltValueLimit limit(max_output_bytes_);
    exec(body);
    return std::move(out_);
  }

  int line() const { return line_; }

 private:
  // ---- statements ----------------------------------------------------------------------

  Flow exec(const Body& body) {
    for (const StmtPtr& stmt : body) {
      const Flow flow = exec(*stmt);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& stmt) {
    line_ = stmt.line;
    if (--steps_left_ < 0) throw TemplateError("the template ran more steps than allowed");
    if (out_.size() > max_output_bytes_) {
      throw TemplateError("the template's output exceeds " + std::to_string(max_output_bytes_) +
                          " bytes");
    }
    switch (stmt.kind) {
      case Stmt::Kind::kText:
        out_ += stmt.text;
        return Flow::kNormal;
      case Stmt::Kind::kOutput:
        out_ += eval(*stmt.expr).str();
        return Flow::kNormal;
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < stmt.conditions.size(); ++i) {
          if (eval(*stmt.conditions[i]).truthy()) return exec(stmt.bodies[i]);
        }
        return exec(stmt.else_body);
      case Stmt::Kind::kFor:
        return exec_for(stmt);
      case Stmt::Kind::kSet:
        exec_set(stmt);
        return Flow::kNormal;
      case Stmt::Kind::kSetBlock: {
        const std::string captured = capture(stmt.bodies[0]);
        bind_targets(stmt.targets, Value(captured));
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro:
        frames_.back().set(stmt.name, make_macro(stmt));
        return Flow::kNormal;
      case Stmt::Kind::kCallBlock:
        exec_call_block(stmt);
        return Flow::kNormal;
      case Stmt::Kind::kFilterBlock:
        out_ += apply_filters(*stmt.expr, Value(capture(stmt.bodies[0]))).str();
        return Flow::kNormal;
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kScope:
        return exec(stmt.bodies[0]);
    }
    return Flow::kNormal;
  }

  std::string capture(const Body& body) {
    std::string saved = std::move(out_);
    out_.clear();
    exec(body);
    std::string captured = std::move(out_);
    out_ = std::move(saved);
    return captured;
  }

  Flow exec_for(const Stmt& stmt) {
    const Value iterable = eval(*stmt.expr);
    List items = iterate(iterable);
    if (stmt.condition) {  // {% for x in xs if cond %}: filtered before loop.* is counted
      List kept;
      for (const Value& item : items) {
        frames_.emplace_back();
        bind_targets(stmt.targets, item);
        const bool keep = eval(*stmt.condition).truthy();
        frames_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(stmt.else_body);
    enter();
    const auto length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      if (--steps_left_ < 0) throw TemplateError("the template ran more steps than allowed");
      frames_.emplace_back();
      bind_targets(stmt.targets, items[static_cast<size_t>(i)]);
      Dict loop;
      loop.set("index", Value(i + 1));
      loop.set("index0", Value(i));
      loop.set("revindex", Value(length - i));
      loop.set("revindex0", Value(length - i - 1));
      loop.set("first", Value(i == 0));
      loop.set("last", Value(i == length - 1));
      loop.set("length", Value(length));
      loop.set("depth", Value(int64_t{1}));
      loop.set("depth0", Value(int64_t{0}));
      loop.set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)]
                                 : Value::undefined("there is no previous item"));
      loop.set("nextitem", i + 1 < length ? items[static_cast<size_t>(i + 1)]
                                          : Value::undefined("there is no next item"));
      loop.set("cycle", Value::function("loop.cycle", [i](CallArgs& args) {
                 if (args.positional.empty()) throw TemplateError("no items for cycling given");
                 return args.positional[static_cast<size_t>(i) % args.positional.size()];
               }));
      frames_.back().set("loop", Value::dict(std::move(loop)));
      const Flow flow = exec(stmt.bodies[0]);
      frames_.pop_back();
      if (flow == Flow::kBreak) break;
    }
    leave();
    return Flow::kNormal;
  }

  void bind_targets(const std::vector<std::string>& targets, const Value& item) {
    if (targets.size() == 1) {
      frames_.back().set(targets[0], item);
      return;
    }
    const List parts = iterate(item);
    if (parts.size() != targets.size()) {
      throw TemplateError(std::string(parts.size() < targets.size() ? "not enough" : "too many") +
                          " values to unpack (expected " + std::to_string(targets.size()) +
                          ", got " + std::to_string(parts.size()) + ")");
    }
    for (size_t i = 0; i < targets.size(); ++i) frames_.back().set(targets[i], parts[i]);
  }

  void exec_set(const Stmt& stmt) {
    const Value value = eval(*stmt.expr);
    if (stmt.attribute_object) {
      const Value object = eval(*stmt.attribute_object);
      if (!object.is_namespace()) {
        throw TemplateError("cannot assign attribute on non-namespace object");
      }
      object.mutable_dict().set(stmt.name, value);
      return;
    }
    bind_targets(stmt.targets, value);
  }

  Value make_macro(const Stmt& stmt) {
    const Stmt* macro = &stmt;
    return Value::function(stmt.name,
                           [this, macro](CallArgs& args) { return call_macro(*macro, args); });
  }

  Value call_macro(const Stmt& macro, CallArgs& args) {
    const Value caller = args.take(SIZE_MAX, "caller");  // only from a {% call %} block
    Dict locals;
    for (size_t i = 0; i < macro.params.size(); ++i) {
      const MacroParam& param = macro.params[i];
      Value value = args.take(i, param.name);
      if (value.is_undefined() && param.default_value) value = eval(*param.default_value);
      if (value.is_undefined()) {
        value = Value::undefined("parameter '" + param.name + "' was not provided");
      }
      locals.set(param.name, value);
    }
    if (args.positional.size() > macro.params.size()) {
      List varargs(args.positional.begin() + static_cast<std::ptrdiff_t>(macro.params.size()),
                   args.positional.end());
      locals.set("varargs", Value::list(std::move(varargs)));
    }
    if (!args.keyword.empty()) {
      Dict kwargs;
      for (auto& [k, v] : args.keyword) kwargs.set(k, v);
      locals.set("kwargs", Value::dict(std::move(kwargs)));
    }
    if (!caller.is_undefined()) locals.set("caller", caller);
    // The macro sees the globals and the template's top-level names, not its caller's locals.
    std::vector<Dict> saved;
    saved.assign(std::make_move_iterator(frames_.begin() + 2),
                 std::make_move_iterator(frames_.end()));
    frames_.resize(2);
    frames_.push_back(std::move(locals));
    const int saved_line = line_;
    enter();
    std::string saved_out = std::move(out_);
    out_.clear();
    exec(macro.bodies[0]);
    std::string result = std::move(out_);
    out_ = std::move(saved_out);
    leave();
    line_ = saved_line;
    frames_.resize(2);
    for (Dict& frame : saved) frames_.push_back(std::move(frame));
    return Value(std::move(result));
  }

  // {% call m(args) %}body{% endcall %}: m is called with caller(), which renders the body in
  // the scope of the call block (a copy of its frames, as they were at the call).
  void exec_call_block(const Stmt& stmt) {
    const Expr& call = *stmt.expr;
    const Value callee = eval(*call.operand);
    if (!callee.is_function()) throw TemplateError("{% call %} needs a macro");
    const Body* body = &stmt.bodies[0];
    auto call_site = std::make_shared<std::vector<Dict>>(frames_);
    Value caller = Value::function("caller", [this, body, call_site](CallArgs&) {
      std::swap(frames_, *call_site);
      std::string text;
      try {
        text = capture(*body);
      } catch (...) {
        std::swap(frames_, *call_site);
        throw;
      }
      std::swap(frames_, *call_site);
      return Value(std::move(text));
    });
    CallArgs args = eval_arguments(call);
    args.keyword.emplace_back("caller", caller);
    out_ += callee.call(args).str();
  }

  void enter() {
    if (++depth_ > kMaxDepth) throw TemplateError("maximum recursion depth exceeded");
  }
  void leave() { --depth_; }

  // ---- expressions ---------------------------------------------------------------------

  Value lookup(const std::string& name) const {
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame) {
      const Value* found = frame->find(name);
      if (found != nullptr) return *found;
    }
    return Value::undefined("'" + name + "' is undefined");
  }

  CallArgs eval_arguments(const Expr& expr) {
    CallArgs args;
    for (const ExprPtr& item : expr.items) args.positional.push_back(eval(*item));
    for (const auto& [name, value] : expr.keywords) args.keyword.emplace_back(name, eval(*value));
    return args;
  }

  Value apply_filters(const Expr& filter, const Value& input) {
    const Value operand = filter.operand ? apply_filters(*filter.operand, input) : input;
    CallArgs args = eval_arguments(filter);
    return apply_filter(filter.name, operand, args);
  }

  Value eval(const Expr& expr) {
    line_ = expr.line;
    switch (expr.kind) {
      case Expr::Kind::kLiteral:
        return expr.value;
      case Expr::Kind::kName:
        return lookup(expr.name);
      case Expr::Kind::kList: {
        List items;
        for (const ExprPtr& item : expr.items) items.push_back(eval(*item));
        return Value::list(std::move(items),
                           expr.is_tuple ? Value::Sequence::kTuple : Value::Sequence::kList);
      }
      case Expr::Kind::kDict: {
        Dict entries;
        for (size_t i = 0; i + 1 < expr.items.size(); i += 2) {
          const Value key = eval(*expr.items[i]);
          if (key.is_list() && !key.is_tuple()) throw TemplateError("unhashable type: 'list'");
          if (key.is_dict()) throw TemplateError("unhashable type: 'dict'");
          entries.set_key(key, eval(*expr.items[i + 1]));
        }
        return Value::dict(std::move(entries));
      }
      case Expr::Kind::kAttribute:
        return get_attribute(eval(*expr.operand), expr.name);
      case Expr::Kind::kItem: {
        const Value object = eval(*expr.operand);
        return get_item(object, eval(*expr.left));
      }
      case Expr::Kind::kSlice: {
        const Value object = eval(*expr.operand);
        const Value start = expr.left ? eval(*expr.left) : Value();
        const Value stop = expr.right ? eval(*expr.right) : Value();
        const Value step = expr.third ? eval(*expr.third) : Value();
        return get_slice(object, start, stop, step);
      }
      case Expr::Kind::kCall: {
        const Value callee = eval(*expr.operand);
        CallArgs args = eval_arguments(expr);
        if (callee.is_undefined()) throw TemplateError(callee.undefined_hint());
        return callee.call(args);
      }
      case Expr::Kind::kFilter: {
        const Value operand = eval(*expr.operand);
        CallArgs args = eval_arguments(expr);
        line_ = expr.line;
        return apply_filter(expr.name, operand, args);
      }
      case Expr::Kind::kTest: {
        const Value operand = eval(*expr.operand);
        CallArgs args = eval_arguments(expr);
        line_ = expr.line;
        return Value(apply_test(expr.name, operand, args) != expr.negated);
      }
      case Expr::Kind::kNot:
        return Value(!eval(*expr.operand).truthy());
      case Expr::Kind::kNegate:
      case Expr::Kind::kPlus: {
        const Value v = eval(*expr.operand);
        if (v.is_undefined()) throw TemplateError(v.undefined_hint());
        if (!(v.is_number() || v.is_bool())) {
          throw TemplateError("bad operand type for unary " +
                              std::string(expr.kind == Expr::Kind::kNegate ? "-" : "+") + ": '" +
                              v.type_name() + "'");
        }
        if (expr.kind == Expr::Kind::kPlus) return v.is_bool() ? Value(v.as_int()) : v;
        return v.is_float() ? Value(-v.as_number()) : Value(-v.as_int());
      }
      case Expr::Kind::kBinary:
        return eval_binary(expr);
      case Expr::Kind::kConditional:
        if (eval(*expr.operand).truthy()) return eval(*expr.left);
        return expr.right
                   ? eval(*expr.right)
                   : Value::undefined("the inline if's condition was false and it has no else");
    }
    return Value();
  }

  Value eval_binary(const Expr& expr) {
    const std::string& op = expr.name;
    if (op == "and") {
      Value left = eval(*expr.left);
      return left.truthy() ? eval(*expr.right) : left;
    }
    if (op == "or") {
      Value left = eval(*expr.left);
      return left.truthy() ? left : eval(*expr.right);
    }
    const Value left = eval(*expr.left);
    const Value right = eval(*expr.right);
    line_ = expr.line;
    if (op == "==") return Value(left == right);
    if (op == "!=") return Value(left != right);
    if (op == "~") {
      std::string joined = left.str() + right.str();
      check_size(joined.size());
      return Value(std::move(joined));
    }
    if (op == "in" || op == "not in") {
      CallArgs args;
      args.positional.push_back(right);
      // Undefined iterates as empty, so nothing is in it.
      if (!(right.is_undefined() || right.is_list() || right.is_dict() || right.is_string())) {
        throw TemplateError("argument of type '" + right.type_name() + "' is not iterable");
      }
      if (right.is_string() && !left.is_string()) {
        throw TemplateError("'in <string>' requires string as left operand, not " +
                            left.type_name());
      }
      return Value(apply_test("in", left, args) == (op == "in"));
    }
    if (left.is_undefined()) throw TemplateError(left.undefined_hint());
    if (right.is_undefined()) throw TemplateError(right.undefined_hint());
    if (op == "<") return Value(less_than(left, right));
    if (op == ">") return Value(less_than(right, left));
    if (op == "<=") return Value(!less_than(right, left));
    if (op == ">=") return Value(!less_than(left, right));
    return arithmetic(op, left, right);
  }

  Value arithmetic(const std::string& op, const Value& a, const Value& b) const {
    const bool numbers = (a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool());
    if (op == "+") {
      // Markup + str escapes the str (and str + Markup likewise): markupsafe's __add__.
      if (a.is_markup() && b.is_string()) {
        return Value::markup(a.as_string() +
                             (b.is_markup() ? b.as_string() : html_escape(b.as_string())));
      }
      if (b.is_markup() && a.is_string())
        return Value::markup(html_escape(a.as_string()) + b.as_string());
      if (a.is_string() && b.is_string()) {
        check_size(a.as_string().size() + b.as_string().size());
        return Value(a.as_string() + b.as_string());
      }
      if (a.is_list() && b.is_list()) {
        check_size((a.as_list().size() + b.as_list().size()) * sizeof(Value));
        List joined = a.as_list();
        joined.insert(joined.end(), b.as_list().begin(), b.as_list().end());
        return Value::list(std::move(joined),
                           a.is_tuple() ? Value::Sequence::kTuple : Value::Sequence::kList);
      }
    }
    if (op == "*" && (a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) {
      return repeat(a, b.as_int());
    }
    if (op == "*" && (b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) {
      return repeat(b, a.as_int());
    }
    if (op == "%" && a.is_string()) {
      CallArgs args;
      if (b.is_tuple()) {
        args.positional = b.as_list();
      } else {
        args.positional.push_back(b);
      }
      return apply_filter("format", a, args);
    }
    if (!numbers) {
      throw TemplateError("unsupported operand type(s) for " + op + ": '" + a.type_name() +
                          "' and '" + b.type_name() + "'");
    }
    const bool floats = a.is_float() || b.is_float();
    const double x = a.as_number(), y = b.as_number();
    if (op == "/") {
      if (y == 0) throw TemplateError("division by zero");
      return Value(x / y);
    }
    if (floats) {
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      if (op == "**") return Value(std::pow(x, y));
      if (y == 0) throw TemplateError("float division by zero");
      if (op == "//") return Value(std::floor(x / y));
      if (op == "%") return Value(x - std::floor(x / y) * y);
    }
    const int64_t i = a.as_int(), j = b.as_int();
    if (op == "+") return Value(i + j);
    if (op == "-") return Value(i - j);
    if (op == "*") return Value(i * j);
    if (op == "**") {
      if (j < 0) return Value(std::pow(x, y));
      int64_t result = 1;
      for (int64_t k = 0; k < j; ++k) result *= i;
      return Value(result);
    }
    if (j == 0) throw TemplateError("integer division or modulo by zero");
    const int64_t quotient = i / j - ((i % j != 0) && ((i < 0) != (j < 0)) ? 1 : 0);
    if (op == "//") return Value(quotient);
    if (op == "%") return Value(i - quotient * j);
    throw TemplateError("unsupported operator " + op);
  }

  Value repeat(const Value& sequence, int64_t times) const {
    // Bytes of one copy (a list's in Values), times the count, checked before building.
    const size_t unit = sequence.is_string() ? sequence.as_string().size()
                                             : sequence.as_list().size() * sizeof(Value);
    if (times > 0 && unit > 0) {
      const auto copies = static_cast<uint64_t>(times);
      check_size(copies > SIZE_MAX / unit ? SIZE_MAX : static_cast<size_t>(copies * unit));
    }
    if (sequence.is_string()) {
      std::string out;
      for (int64_t k = 0; k < times; ++k) out += sequence.as_string();
      return Value(std::move(out));
    }
    List out;
    for (int64_t k = 0; k < times; ++k)
      out.insert(out.end(), sequence.as_list().begin(), sequence.as_list().end());
    return Value::list(std::move(out),
                       sequence.is_tuple() ? Value::Sequence::kTuple : Value::Sequence::kList);
  }

  // Strings and lists a template builds are bounded like its output.
  static void check_size(size_t size) { check_built_size(size); }

  const size_t max_output_bytes_;
  int64_t steps_left_;
  std::vector<Dict> frames_;  // [globals, template top level, loop and macro frames...]
  std::string out_;
  int line_ = 0;
  int depth_ = 0;
};

}  // namespace

Expected<Template> Template::parse(std::string_view source, std::string name) {
  Template parsed;
  parsed.name_ = std::move(name);
  try {
    parsed.body_ = std::make_shared<const Body>(parse_template(source));
  } catch (const TemplateError& e) {
    return Status(StatusCode::kInvalidArgument, "template " + parsed.name_ + ": " + e.what());
  }
  return parsed;
}

Expected<std::string> Template::render(const Value& context, const RenderOptions& options) const {
  Interpreter interpreter(context, options);
  try {
    return interpreter.render(*body_);
  } catch (const TemplateError& e) {
    return Status(
        StatusCode::kInvalidArgument,
        "template " + name_ + ": line " + std::to_string(interpreter.line()) + ": " + e.what());
  }
}

}  // namespace sparkd::jinja
