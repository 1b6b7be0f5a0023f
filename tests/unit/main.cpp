// The Catch2 test runner for every file in tests/unit/.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
