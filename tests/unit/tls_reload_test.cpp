// tls::Config's file watching: ReloadIfChanged reloads only after a file
// changed, reports a bad file once (not at every check), and
// CheckFilesEvery makes context() do the checking itself.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "disco/tls.h"
#include "fixture/test_certs.h"
#include "fixture/util.h"

namespace disco {
namespace {

using namespace std::chrono_literals;

class TlsReloadTest : public ::testing::Test {
 protected:
  // A file written over in place keeps its size when the contents differ
  // only in the key; the modification time must be what tells them apart.
  void Rotate() {
    const auto fresh = ca_.Issue("fresh", {.dns = {"svc"}});
    std::filesystem::rename(fresh.cert_file, cert_.cert_file);
    std::filesystem::rename(fresh.key_file, cert_.key_file);
  }

  testing::TempDir dir_{"disco-tls-reload"};
  testing::TestCa ca_{dir_.path(), "ca"};
  testing::IssuedCert cert_ = ca_.Issue("svc", {.dns = {"svc"}});
};

TEST_F(TlsReloadTest, ReloadsOnlyWhenAFileChanged) {
  auto config = tls::Config::Load(tls::Role::kServer, {cert_.cert_file, cert_.key_file, {}});
  ASSERT_TRUE(config) << config.error().message;
  auto unchanged = (*config)->ReloadIfChanged();
  ASSERT_TRUE(unchanged);
  EXPECT_FALSE(*unchanged);
  EXPECT_EQ((*config)->generation(), 1u);

  Rotate();
  auto changed = (*config)->ReloadIfChanged();
  ASSERT_TRUE(changed) << changed.error().message;
  EXPECT_TRUE(*changed);
  EXPECT_EQ((*config)->generation(), 2u);
}

TEST_F(TlsReloadTest, ABadFileIsReportedOnceAndTheOldSettingsStay) {
  auto config = tls::Config::Load(tls::Role::kServer, {cert_.cert_file, cert_.key_file, {}});
  ASSERT_TRUE(config);
  const auto before = (*config)->context();
  std::ofstream(cert_.cert_file) << "not a certificate\n";
  auto failed = (*config)->ReloadIfChanged();
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find(cert_.cert_file), std::string::npos);
  EXPECT_EQ((*config)->context(), before);
  // Same bad file: nothing new to report until it changes again.
  auto again = (*config)->ReloadIfChanged();
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  Rotate();
  auto fixed = (*config)->ReloadIfChanged();
  ASSERT_TRUE(fixed);
  EXPECT_TRUE(*fixed);
  EXPECT_NE((*config)->context(), before);
}

TEST_F(TlsReloadTest, ContextChecksTheFilesWhenAsked) {
  auto config = tls::Config::Load(tls::Role::kClient, {cert_.cert_file, cert_.key_file,
                                                       ca_.ca_file()});
  ASSERT_TRUE(config);
  Rotate();
  (*config)->context();
  EXPECT_EQ((*config)->generation(), 1u) << "checking is off by default";

  // Long enough that the next line runs inside it on a slow machine.
  (*config)->CheckFilesEvery(1s);
  EXPECT_EQ((*config)->check_interval(), 1s);
  (*config)->context();
  EXPECT_EQ((*config)->generation(), 1u) << "not before the first interval has passed";
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        (*config)->context();
        return (*config)->generation() == 2u;
      },
      5s, 5ms));
}

}  // namespace
}  // namespace disco
