// The device's key, CSR and the small fleet CA (waybill_pki), checked against what the openssl
// CLI (the same OpenSSL that Paho and Mosquitto use) makes of the files.
#include "waybill/sync/pki.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace waybill::sync {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a shell command; returns its stdout+stderr and sets *status to its exit status.
std::string Shell(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return out;
  }
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

unsigned Mode(const fs::path& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

class PkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("waybill-pki-unit-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A CA, a device key and its CSR, signed: the usual flow.
  void MakeDevice(const std::string& id) {
    CaInitOptions ca;
    ca.now_unix_s = Now();
    ASSERT_TRUE(InitCa((dir_ / "ca").string(), ca).ok());
    ASSERT_TRUE(GenerateKeyFile((dir_ / "device.key").string(), {}).ok());
    auto key = DeviceKey::Load((dir_ / "device.key").string());
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    auto csr = (*key)->MakeCsrPem(id);
    ASSERT_TRUE(csr.ok()) << csr.status().ToString();
    csr_ = *csr;
    SignOptions so;
    so.now_unix_s = Now();
    auto cert = SignCsr((dir_ / "ca").string(), csr_, "device.csr", so);
    ASSERT_TRUE(cert.ok()) << cert.status().ToString();
    std::ofstream(dir_ / "device.crt") << *cert;
  }

  fs::path dir_;
  std::string csr_;
};

TEST_F(PkiTest, KeyIsWrittenWithMode0600EvenUnderAPermissiveUmask) {
  mode_t old = ::umask(0);
  Status s = GenerateKeyFile((dir_ / "device.key").string(), {});
  ::umask(old);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Mode(dir_ / "device.key"), 0600u);
  int status = 0;
  std::string out = Shell("openssl pkey -in '" + (dir_ / "device.key").string() +
                              "' -noout -text | grep -c 'NIST CURVE: P-256'",
                          &status);
  EXPECT_EQ(status, 0) << out;
  // No temporary file is left beside it.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(PkiTest, AnExistingKeyIsNeverOverwrittenUnlessAsked) {
  std::string path = (dir_ / "device.key").string();
  ASSERT_TRUE(GenerateKeyFile(path, {}).ok());
  std::string before = ReadAll(path);
  Status again = GenerateKeyFile(path, {});
  EXPECT_TRUE((again.code() == Status::Code::kFailedPrecondition)) << again.ToString();
  EXPECT_NE(again.message().find(path), std::string::npos) << again.message();
  EXPECT_EQ(ReadAll(path), before);

  FileWriteOptions replace;
  replace.replace = true;
  ASSERT_TRUE(GenerateKeyFile(path, replace).ok());
  EXPECT_NE(ReadAll(path), before);
  EXPECT_EQ(Mode(path), 0600u);
}

TEST_F(PkiTest, CsrCarriesTheDeviceIdAsCommonNameAndVerifies) {
  ASSERT_TRUE(GenerateKeyFile((dir_ / "device.key").string(), {}).ok());
  auto key = DeviceKey::Load((dir_ / "device.key").string());
  ASSERT_TRUE(key.ok());
  auto csr = (*key)->MakeCsrPem("truck-0042");
  ASSERT_TRUE(csr.ok()) << csr.status().ToString();
  auto info = VerifyCsr(*csr, "csr");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->common_name, "truck-0042");

  std::ofstream(dir_ / "device.csr") << *csr;
  int status = 0;
  std::string out = Shell(
      "openssl req -in '" + (dir_ / "device.csr").string() + "' -verify -noout -subject", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("CN = truck-0042"), std::string::npos) << out;

  EXPECT_TRUE((*key)->MakeCsrPem("truck 42/../x").status().IsInvalidArgument());
}

TEST_F(PkiTest, SignRefusesATamperedCsrAndSaysWhy) {
  MakeDevice("truck-7");
  // Change the CN inside the signed part (truck-7 -> truck-8) without re-signing.
  std::ofstream(dir_ / "device.csr") << csr_;
  int status = 0;
  std::string der_path = (dir_ / "device.der").string();
  Shell("openssl req -in '" + (dir_ / "device.csr").string() + "' -outform DER -out '" + der_path +
            "'",
        &status);
  ASSERT_EQ(status, 0);
  std::string der = ReadAll(der_path);
  size_t at = der.find("truck-7");
  ASSERT_NE(at, std::string::npos);
  der[at + 6] = '8';
  SignOptions so;
  so.now_unix_s = Now();
  auto cert = SignCsr((dir_ / "ca").string(), der, "tampered.csr", so);
  ASSERT_FALSE(cert.ok());
  EXPECT_TRUE(cert.status().IsInvalidArgument());
  EXPECT_NE(cert.status().message().find("tampered.csr"), std::string::npos);
  EXPECT_NE(cert.status().message().find("signature does not verify"), std::string::npos)
      << cert.status().message();

  // The untouched DER form signs.
  der[at + 6] = '7';
  EXPECT_TRUE(SignCsr((dir_ / "ca").string(), der, "device.der", so).ok());
}

TEST_F(PkiTest, SignRefusesACsrWhoseCommonNameIsNoDeviceId) {
  CaInitOptions ca;
  ca.now_unix_s = Now();
  ASSERT_TRUE(InitCa((dir_ / "ca").string(), ca).ok());
  int status = 0;
  std::string out = Shell("cd '" + dir_.string() +
                              "' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                              "-nodes -keyout bad.key -subj '/O=x/CN=truck.7' -out bad.csr",
                          &status);
  ASSERT_EQ(status, 0) << out;
  SignOptions so;
  so.now_unix_s = Now();
  auto cert = SignCsr((dir_ / "ca").string(), ReadAll(dir_ / "bad.csr"), "bad.csr", so);
  ASSERT_FALSE(cert.ok());
  EXPECT_NE(cert.status().message().find("\"truck.7\" is not a valid device id"), std::string::npos)
      << cert.status().message();
}

TEST_F(PkiTest, SignedCertificateMatchesTheKeyChainsAndIsForClients) {
  MakeDevice("truck-0042");
  std::string crt = (dir_ / "device.crt").string();
  auto key = DeviceKey::Load((dir_ / "device.key").string());
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE((*key)->CheckCertificate(crt).ok());
  EXPECT_TRUE(VerifyCertificateChain(crt, (dir_ / "ca" / kCaCertFile).string()).ok());

  auto info = ReadCertificate(crt);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->common_name, "truck-0042");
  EXPECT_FALSE(info->is_ca);
  EXPECT_NEAR(static_cast<double>(info->not_after_unix_s - info->not_before_unix_s),
              825.0 * 86400 + 300, 2.0);

  // OpenSSL (what Paho and Mosquitto use) agrees: chain, clientAuth, digitalSignature.
  int status = 0;
  std::string out = Shell("openssl verify -purpose sslclient -CAfile '" +
                              (dir_ / "ca" / kCaCertFile).string() + "' '" + crt + "'",
                          &status);
  EXPECT_EQ(status, 0) << out;
  out = Shell("openssl x509 -in '" + crt + "' -noout -text", &status);
  EXPECT_NE(out.find("TLS Web Client Authentication"), std::string::npos) << out;
  EXPECT_NE(out.find("Digital Signature"), std::string::npos) << out;
  EXPECT_NE(out.find("CA:FALSE"), std::string::npos) << out;

  // Another key does not match the certificate.
  ASSERT_TRUE(GenerateKeyFile((dir_ / "other.key").string(), {}).ok());
  auto other = DeviceKey::Load((dir_ / "other.key").string());
  ASSERT_TRUE(other.ok());
  Status mismatch = (*other)->CheckCertificate(crt);
  EXPECT_TRUE((mismatch.code() == Status::Code::kFailedPrecondition));
  EXPECT_NE(mismatch.message().find("does not belong to the key"), std::string::npos);
}

TEST_F(PkiTest, ACertificateFromAnotherCaDoesNotChainAndTheReasonIsGiven) {
  MakeDevice("truck-1");
  CaInitOptions other;
  other.now_unix_s = Now();
  other.common_name = "Someone Else CA";
  ASSERT_TRUE(InitCa((dir_ / "other-ca").string(), other).ok());
  Status s = VerifyCertificateChain((dir_ / "device.crt").string(),
                                    (dir_ / "other-ca" / kCaCertFile).string());
  ASSERT_TRUE((s.code() == Status::Code::kFailedPrecondition)) << s.ToString();
  EXPECT_NE(s.message().find("not correctly signed by the trusted CA"), std::string::npos)
      << s.message();
}

TEST_F(PkiTest, CaInitWritesAPrivateKeyAndRefusesToReplaceAnExistingCa) {
  CaInitOptions ca;
  ca.now_unix_s = Now();
  ca.common_name = "Acme Fleet CA";
  ca.validity_days = 30;
  ASSERT_TRUE(InitCa((dir_ / "ca").string(), ca).ok());
  EXPECT_EQ(Mode(dir_ / "ca"), 0700u);
  EXPECT_EQ(Mode(dir_ / "ca" / kCaKeyFile), 0600u);
  EXPECT_EQ(Mode(dir_ / "ca" / kCaCertFile), 0644u);
  auto info = ReadCertificate((dir_ / "ca" / kCaCertFile).string());
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->is_ca);
  EXPECT_EQ(info->common_name, "Acme Fleet CA");
  EXPECT_EQ(info->subject, info->issuer);

  std::string key_before = ReadAll(dir_ / "ca" / kCaKeyFile);
  Status again = InitCa((dir_ / "ca").string(), ca);
  EXPECT_TRUE((again.code() == Status::Code::kFailedPrecondition)) << again.ToString();
  EXPECT_EQ(ReadAll(dir_ / "ca" / kCaKeyFile), key_before);

  ca.common_name = "x,CN=evil";
  EXPECT_TRUE(InitCa((dir_ / "ca2").string(), ca).IsInvalidArgument());
}

TEST_F(PkiTest, ACertificateEndsNoLaterThanItsCa) {
  CaInitOptions ca;
  ca.now_unix_s = Now();
  ca.validity_days = 10;
  ASSERT_TRUE(InitCa((dir_ / "ca").string(), ca).ok());
  ASSERT_TRUE(GenerateKeyFile((dir_ / "device.key").string(), {}).ok());
  auto key = DeviceKey::Load((dir_ / "device.key").string());
  ASSERT_TRUE(key.ok());
  SignOptions so;
  so.now_unix_s = Now();
  so.validity_days = 400;
  auto cert = SignCsr((dir_ / "ca").string(), *(*key)->MakeCsrPem("truck-1"), "csr", so);
  ASSERT_TRUE(cert.ok());
  std::ofstream(dir_ / "device.crt") << *cert;
  auto dev = ReadCertificate((dir_ / "device.crt").string());
  auto root = ReadCertificate((dir_ / "ca" / kCaCertFile).string());
  ASSERT_TRUE(dev.ok() && root.ok());
  EXPECT_EQ(dev->not_after_unix_s, root->not_after_unix_s);
}

TEST_F(PkiTest, SignaturesVerifyWithTheKeyAndFailWhenTheDataChanges) {
  ASSERT_TRUE(GenerateKeyFile((dir_ / "device.key").string(), {}).ok());
  auto key = DeviceKey::Load((dir_ / "device.key").string());
  ASSERT_TRUE(key.ok());
  auto sig = (*key)->SignSha256("proof of delivery ORD-1");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE((*key)->VerifySha256("proof of delivery ORD-1", *sig).ok());
  EXPECT_FALSE((*key)->VerifySha256("proof of delivery ORD-2", *sig).ok());
  auto pub = (*key)->PublicKeyPem();
  ASSERT_TRUE(pub.ok());
  EXPECT_NE(pub->find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_EQ(pub->find("PRIVATE"), std::string::npos);
}

TEST_F(PkiTest, LoadErrorsNameThePathAndNeverTheKeyBytes) {
  auto missing = DeviceKey::Load((dir_ / "nope.key").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_NE(missing.status().message().find("nope.key"), std::string::npos);

  // An RSA key is refused for what it is; the message holds no line of the key.
  int status = 0;
  Shell("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out '" +
            (dir_ / "rsa.key").string() + "'",
        &status);
  ASSERT_EQ(status, 0);
  auto rsa = DeviceKey::Load((dir_ / "rsa.key").string());
  ASSERT_FALSE(rsa.ok());
  EXPECT_NE(rsa.status().message().find("device keys are EC P-256"), std::string::npos)
      << rsa.status().message();
  std::string pem = ReadAll(dir_ / "rsa.key");
  std::string body_line = pem.substr(pem.find('\n') + 1, 40);
  EXPECT_EQ(rsa.status().message().find(body_line), std::string::npos);
}

}  // namespace
}  // namespace waybill::sync
