// FrameRing on the CPU: order, back-pressure, no reuse before release, close, conversion, misuse.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "longlive/error.h"
#include "longlive/frame_ring.h"

namespace longlive::test {
namespace {

using namespace std::chrono_literals;

TEST(FrameRing, FramesArriveInOrderThroughASmallRing) {
  FrameRing ring(3, 4, 5);
  constexpr int kFrames = 200;
  std::thread producer([&] {
    for (int i = 0; i < kFrames; ++i) {
      const FrameSlot s = ring.acquire_write();
      ASSERT_TRUE(s);
      s.rgba.narrow(2, 0, 3).fill_(i % 251);
      ring.publish(s, 1000 + i);
    }
    ring.close();
  });
  int received = 0;
  while (const FrameSlot s = ring.acquire_read()) {
    EXPECT_EQ(s.sequence, received);
    EXPECT_EQ(s.frame_index, 1000 + received);
    EXPECT_EQ(s.slot, received % 3);
    EXPECT_EQ(s.rgba[2][3][1].item<uint8_t>(), received % 251);
    EXPECT_EQ(s.rgba[2][3][3].item<uint8_t>(), 255);
    ++received;
    if (received % 7 == 0) std::this_thread::sleep_for(1ms);  // a slow consumer now and then
    ring.release(s);
  }
  producer.join();
  EXPECT_EQ(received, kFrames);
}

TEST(FrameRing, NoSlotIsReusedBeforeItsConsumerReleasedIt) {
  FrameRing ring(2, 2, 2);
  for (int i = 0; i < 2; ++i) ring.publish(ring.acquire_write(), i);
  EXPECT_FALSE(ring.acquire_write(20ms)) << "a full ring must block the producer";
  const FrameSlot a = ring.acquire_read();
  const FrameSlot b = ring.acquire_read();
  EXPECT_EQ(ring.pending(), 2);
  EXPECT_FALSE(ring.acquire_write(20ms)) << "read but not released";
  ring.release(b);  // out of order: slot 0 is still held
  EXPECT_FALSE(ring.acquire_write(20ms)) << "the next slot in ring order is still being read";
  // A producer blocked in acquire_write wakes up when the consumer releases.
  std::atomic<int64_t> got{-1};
  std::thread producer([&] {
    const FrameSlot s = ring.acquire_write();
    got = s.slot;
    ring.publish(s, 2);
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(got.load(), -1);
  ring.release(a);
  producer.join();
  EXPECT_EQ(got.load(), 0);
  const FrameSlot c = ring.acquire_read();
  EXPECT_EQ(c.frame_index, 2);
  EXPECT_EQ(c.sequence, 2);
  ring.release(c);
}

TEST(FrameRing, CloseWakesBothSidesAndDrains) {
  FrameRing ring(1, 2, 2);
  std::thread consumer([&] { EXPECT_FALSE(ring.acquire_read()); });
  std::this_thread::sleep_for(10ms);
  ring.close();
  consumer.join();
  EXPECT_FALSE(ring.acquire_write());
  ring.reset();
  ring.publish(ring.acquire_write(), 7);
  std::thread producer([&] { EXPECT_FALSE(ring.acquire_write()); });
  std::this_thread::sleep_for(10ms);
  ring.close();
  producer.join();
  const FrameSlot last = ring.acquire_read();  // published before close: still delivered
  ASSERT_TRUE(last);
  EXPECT_EQ(last.frame_index, 7);
  ring.release(last);
  EXPECT_FALSE(ring.acquire_read());
}

TEST(FrameRing, PushFramesConvertsToRgba8) {
  FrameRing ring(4, 3, 2);
  const at::Tensor frames = at::rand({2, 3, 3, 2});
  ASSERT_TRUE(ring.push_frames(frames, 10));
  for (int i = 0; i < 2; ++i) {
    const FrameSlot s = ring.acquire_read();
    EXPECT_EQ(s.frame_index, 10 + i);
    for (int c = 0; c < 3; ++c)
      EXPECT_EQ(s.rgba[1][0][c].item<uint8_t>(),
                static_cast<uint8_t>(std::lround(frames[i][c][1][0].item<float>() * 255)));
    ring.release(s);
  }
  EXPECT_THROW(ring.push_frames(at::rand({1, 3, 4, 2}), 0), ConfigError);
}

TEST(FrameRing, MisuseIsAnError) {
  FrameRing ring(2, 2, 2);
  const FrameSlot s = ring.acquire_write();
  ring.publish(s, 0);
  EXPECT_THROW(ring.publish(s, 0), Error);
  EXPECT_THROW(ring.release(s), Error);  // not acquired for reading
  EXPECT_THROW(FrameRing(0, 2, 2), ConfigError);
}

}  // namespace
}  // namespace longlive::test
