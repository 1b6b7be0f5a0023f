#include "engine/backend/cpu/cpu_backend.h"
#include "tests/support/test_backend.h"

namespace sparkd::testing {

std::unique_ptr<Backend> make_test_backend() {
  return make_cpu_backend();
}

std::string test_backend_name() {
  return "cpu";
}

}  // namespace sparkd::testing
