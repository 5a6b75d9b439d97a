# Every dependency comes from Debian's packages (host or multiarch for cross builds); see
# docs/ARCHITECTURE.md for why each was chosen. scripts/bootstrap installs them.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(nanopb CONFIG REQUIRED)
find_package(eclipse-paho-mqtt-c CONFIG REQUIRED)
find_package(PahoMqttCpp CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(tomlplusplus CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(CURL REQUIRED)

pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(GPIOD REQUIRED IMPORTED_TARGET libgpiod)
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

# mbedTLS 2.28 in Debian ships neither a CMake config nor a pkg-config file.
find_path(MBEDTLS_INCLUDE_DIR mbedtls/ssl.h REQUIRED)
find_library(MBEDTLS_LIBRARY mbedtls REQUIRED)
find_library(MBEDX509_LIBRARY mbedx509 REQUIRED)
find_library(MBEDCRYPTO_LIBRARY mbedcrypto REQUIRED)
add_library(waybill_mbedtls INTERFACE)
target_include_directories(waybill_mbedtls INTERFACE ${MBEDTLS_INCLUDE_DIR})
target_link_libraries(waybill_mbedtls INTERFACE
  ${MBEDTLS_LIBRARY} ${MBEDX509_LIBRARY} ${MBEDCRYPTO_LIBRARY})

if(WAYBILL_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()
if(WAYBILL_BENCH)
  find_package(benchmark CONFIG REQUIRED)
endif()
