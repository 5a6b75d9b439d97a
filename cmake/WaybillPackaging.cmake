# Debian packages of the build tree (CPack DEB, one package per install component):
#
#   waybill         waybilld, waybillctl and the files of one board (WAYBILL_BOARD): its
#                   board.toml, its systemd unit, its udev rules if any; the waybill system user
#                   (sysusers.d) and an example waybill.toml in /usr/share/doc/waybill
#   waybill-bridge  waybill-bridge, its unit, its system user and an example bridge.toml
#                   (amd64 and arm64 only: the bridge runs in the cloud or on an arm64 server)
#
# Nothing else is installed into a package: install() rules without COMPONENT would land in
# CPack's "Unspecified" component, which is not in CPACK_COMPONENTS_ALL. The architecture is the
# target's, not the build machine's. Depends comes from dpkg-shlibdeps where dpkg knows the
# target's libraries (native and multiarch builds); a tree built against WAYBILL_SYSROOT has no
# dpkg database to ask, so there the NEEDED entries of the programs are mapped to Debian 12
# packages through packaging/debian-sonames.txt at packaging time. `./scripts/package` is the
# one command; docs/FLASHING.md the tech's guide; docs/ARCHITECTURE.md says why.
include_guard(GLOBAL)

# The Debian architecture of the target, from the library triple that both the cross toolchains
# (toolchains/*.cmake) and CMake's native detection on Debian set.
set(_waybill_deb_arch_of_aarch64-linux-gnu arm64)
set(_waybill_deb_arch_of_arm-linux-gnueabihf armhf)
set(_waybill_deb_arch_of_x86_64-linux-gnu amd64)
set(WAYBILL_DEB_ARCH "${_waybill_deb_arch_of_${CMAKE_LIBRARY_ARCHITECTURE}}")
if(NOT WAYBILL_DEB_ARCH)
  message(STATUS "Packaging: no Debian architecture for '${CMAKE_LIBRARY_ARCHITECTURE}': "
                 "no .deb packages from this tree")
  return()
endif()

set(WAYBILL_DEB_DEPENDS "auto" CACHE STRING
    "Depends of the .deb packages: auto (dpkg-shlibdeps unless WAYBILL_SYSROOT is set), shlibdeps, static")
set_property(CACHE WAYBILL_DEB_DEPENDS PROPERTY STRINGS auto shlibdeps static)
set(_depends_mode "${WAYBILL_DEB_DEPENDS}")
if(_depends_mode STREQUAL "auto")
  if(WAYBILL_SYSROOT)
    set(_depends_mode static)
  else()
    set(_depends_mode shlibdeps)
  endif()
elseif(NOT _depends_mode MATCHES "^(shlibdeps|static)$")
  message(FATAL_ERROR "WAYBILL_DEB_DEPENDS=${WAYBILL_DEB_DEPENDS}: auto, shlibdeps or static")
endif()

set(_pkg_dir "${PROJECT_SOURCE_DIR}/packaging")
set(_bridge_packaged OFF)
if(WAYBILL_DEB_ARCH MATCHES "^(amd64|arm64)$")
  set(_bridge_packaged ON)
endif()

# Files that only the packages need.
install(FILES "${_pkg_dir}/waybill.example.toml" DESTINATION share/doc/waybill COMPONENT waybill)
install(FILES "${PROJECT_SOURCE_DIR}/docs/FLASHING.md" DESTINATION share/doc/waybill
        COMPONENT waybill)
install(FILES "${PROJECT_SOURCE_DIR}/cloud-bridge/deploy/waybill-bridge.sysusers"
        DESTINATION lib/sysusers.d RENAME waybill-bridge.conf COMPONENT bridge)
# waybill-bridge.service names it in Documentation=.
install(FILES "${PROJECT_SOURCE_DIR}/docs/BRIDGE.md" DESTINATION share/doc/waybill
        COMPONENT bridge)

# Maintainer scripts, one set per package from the same templates: the unit, the sysusers file
# and the udev rules (if any) they act on.
function(_waybill_maintainer_scripts component unit sysusers user home udev_rules)
  set(WAYBILL_PKG_UNIT "${unit}")
  set(WAYBILL_PKG_SYSUSERS "${sysusers}")
  set(WAYBILL_PKG_USER "${user}")
  set(WAYBILL_PKG_HOME "${home}")
  set(WAYBILL_PKG_UDEV_RULES "${udev_rules}")
  set(_out "${PROJECT_BINARY_DIR}/packaging/${component}")
  foreach(script IN ITEMS postinst prerm postrm)
    configure_file("${_pkg_dir}/${script}.in" "${_out}/${script}" @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                    WORLD_READ WORLD_EXECUTE)
  endforeach()
  string(TOUPPER "${component}" _c)
  set(CPACK_DEBIAN_${_c}_PACKAGE_CONTROL_EXTRA "${_out}/postinst;${_out}/prerm;${_out}/postrm"
      PARENT_SCOPE)
endfunction()

set(_udev_rules "")
if(EXISTS "${PROJECT_SOURCE_DIR}/boards/${WAYBILL_BOARD}/60-waybill.rules")
  set(_udev_rules "/usr/lib/udev/rules.d/60-waybill.rules")
endif()
_waybill_maintainer_scripts(waybill waybilld.service /usr/lib/sysusers.d/waybill.conf waybill
                            /var/lib/waybill "${_udev_rules}")
_waybill_maintainer_scripts(bridge waybill-bridge.service /usr/lib/sysusers.d/waybill-bridge.conf
                            waybill-bridge /var/lib/waybill-bridge "")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME waybill)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "Waybill maintainers <maintainers@waybill.invalid>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Techs flash small eMMCs: the programs go stripped (the unstripped ones stay in the build tree,
# for gdb against a core file from the board).
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL waybill)
if(_bridge_packaged)
  list(APPEND CPACK_COMPONENTS_ALL bridge)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "${WAYBILL_DEB_ARCH}")
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

set(CPACK_DEBIAN_WAYBILL_PACKAGE_NAME waybill)
set(CPACK_DEBIAN_WAYBILL_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_WAYBILL_DESCRIPTION
    "Truck telematics edge gateway (board ${WAYBILL_BOARD})
waybilld reads the GNSS receiver, records fixes, deliveries and proofs of
delivery into a power-safe SQLite outbox and syncs them over MQTT.
waybillctl inspects the outbox and replays GNSS recordings.
.
Built for the board ${WAYBILL_BOARD}: /usr/share/waybill/boards/${WAYBILL_BOARD}/board.toml
and its unit waybilld.service. The unit is not enabled by the package: write
/etc/waybill/waybill.toml first (example in /usr/share/doc/waybill), then
systemctl enable --now waybilld.")
set(CPACK_DEBIAN_BRIDGE_PACKAGE_NAME waybill-bridge)
set(CPACK_DEBIAN_BRIDGE_PACKAGE_SECTION net)
set(CPACK_DEBIAN_BRIDGE_DESCRIPTION
    "Waybill cloud bridge: trucks' events from MQTT to the backend
waybill-bridge subscribes to the fleet's MQTT topics, validates and stores the
trucks' events durably, acknowledges them to the trucks and forwards them to
the order and fulfilment backend over HTTP with idempotency keys.
.
The unit is not enabled by the package: write /etc/waybill/bridge.toml first
(example in /usr/share/doc/waybill), then systemctl enable --now waybill-bridge.")

if(_depends_mode STREQUAL "shlibdeps")
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  # Empty: only what dpkg-shlibdeps finds, nothing from CPACK_DEBIAN_PACKAGE_DEPENDS.
  set(CPACK_DEBIAN_WAYBILL_PACKAGE_DEPENDS "")
  set(CPACK_DEBIAN_BRIDGE_PACKAGE_DEPENDS "")
else()
  # Computed by cpack, when the programs exist: packaging/static-depends.cmake reads their
  # NEEDED entries and sets CPACK_DEBIAN_<COMPONENT>_PACKAGE_DEPENDS.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
  find_program(WAYBILL_READELF NAMES ${CMAKE_READELF} readelf REQUIRED)
  set(_programs_waybill "$<TARGET_FILE:waybilld>;$<TARGET_FILE:waybillctl>")
  set(_programs_bridge "")
  if(_bridge_packaged)
    set(_programs_bridge "$<TARGET_FILE:waybill-bridge>")
  endif()
  file(GENERATE OUTPUT "${PROJECT_BINARY_DIR}/packaging/cpack-project-config.cmake"
       CONTENT "set(WAYBILL_READELF [[${WAYBILL_READELF}]])
set(WAYBILL_SONAME_MAP [[${_pkg_dir}/debian-sonames.txt]])
set(WAYBILL_PROGRAMS_WAYBILL [[${_programs_waybill}]])
set(WAYBILL_PROGRAMS_BRIDGE [[${_programs_bridge}]])
include([[${_pkg_dir}/static-depends.cmake]])
")
  set(CPACK_PROJECT_CONFIG_FILE "${PROJECT_BINARY_DIR}/packaging/cpack-project-config.cmake")
endif()
message(STATUS "Packaging: ${WAYBILL_DEB_ARCH}, board ${WAYBILL_BOARD}, Depends by ${_depends_mode}"
               " (packages: ${CPACK_COMPONENTS_ALL})")

include(CPack)
