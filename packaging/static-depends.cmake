# Depends of the .deb packages of a tree built against a sysroot (WAYBILL_SYSROOT), where
# dpkg-shlibdeps cannot work: the sysroot is unpacked .deb files with no dpkg database, and the
# build machine's database knows no package of that architecture. Included by cpack (through
# CPACK_PROJECT_CONFIG_FILE, written by cmake/WaybillPackaging.cmake) once the programs are
# built: every DT_NEEDED entry of the packaged programs must be in debian-sonames.txt, which
# names the Debian 12 package (and lowest version) that provides it. A library the code starts
# to link fails the packaging here, naming the program and the library, instead of producing a
# package that installs and then does not start.

file(STRINGS "${WAYBILL_SONAME_MAP}" _lines REGEX "^[^#]")
set(_known "")
foreach(_line IN LISTS _lines)
  if(NOT _line MATCHES "^([^ \t]+)[ \t]+(.+)$")
    message(FATAL_ERROR "${WAYBILL_SONAME_MAP}: '${_line}' is not 'soname package-dependency'")
  endif()
  set(_dep_of_${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
  list(APPEND _known "${CMAKE_MATCH_1}")
endforeach()

function(_waybill_static_depends component programs)
  set(_deps "")
  set(_unknown "")
  foreach(_program IN LISTS programs)
    if(NOT EXISTS "${_program}")
      message(FATAL_ERROR "packaging ${component}: ${_program} is not built (scripts/package "
                          "builds it; by hand: cmake --build <tree> --target <program>)")
    endif()
    execute_process(COMMAND "${WAYBILL_READELF}" --dynamic --wide "${_program}"
                    OUTPUT_VARIABLE _dynamic RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "packaging ${component}: ${WAYBILL_READELF} failed on ${_program}")
    endif()
    string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*\\[[^]\n]+\\]" _needed "${_dynamic}")
    foreach(_entry IN LISTS _needed)
      string(REGEX REPLACE ".*\\[([^]]+)\\]$" "\\1" _soname "${_entry}")
      # list(FIND), not IN_LIST: cpack reads this file without the project's policies.
      list(FIND _known "${_soname}" _index)
      if(_index GREATER -1)
        list(APPEND _deps "${_dep_of_${_soname}}")
      else()
        get_filename_component(_name "${_program}" NAME)
        list(APPEND _unknown "${_soname} (needed by ${_name})")
      endif()
    endforeach()
  endforeach()
  if(_unknown)
    list(JOIN _unknown ", " _unknown)
    message(FATAL_ERROR "packaging ${component}: no Debian package known for ${_unknown}: add "
                        "a line 'soname package (>= version)' to ${WAYBILL_SONAME_MAP} "
                        "(dpkg -S <soname> on a Debian 12 system of that architecture says which)")
  endif()
  list(REMOVE_DUPLICATES _deps)
  list(SORT _deps)
  list(JOIN _deps ", " _deps)
  string(TOUPPER "${component}" _c)
  set(CPACK_DEBIAN_${_c}_PACKAGE_DEPENDS "${_deps}" PARENT_SCOPE)
endfunction()

_waybill_static_depends(waybill "${WAYBILL_PROGRAMS_WAYBILL}")
if(WAYBILL_PROGRAMS_BRIDGE)
  _waybill_static_depends(bridge "${WAYBILL_PROGRAMS_BRIDGE}")
endif()
