#include <gtest/gtest.h>

#include "longlive/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  longlive::log::init(longlive::log::Level::warn);
  return RUN_ALL_TESTS();
}
