# Compiler flags shared by every target of the project.
add_library(waybill_options INTERFACE)
target_compile_options(waybill_options INTERFACE
  -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wformat=2 -Wno-missing-field-initializers)
target_compile_definitions(waybill_options INTERFACE
  WAYBILL_VERSION="${PROJECT_VERSION}")
if(WAYBILL_SANITIZE)
  target_compile_options(waybill_options INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(waybill_options INTERFACE -fsanitize=address,undefined)
endif()
