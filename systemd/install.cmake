# Installs the systemd integration (component "systemd"): the units, the sysusers.d and
# tmpfiles.d snippets, and the configuration, where a distribution puts them.
#
# Included by the root CMakeLists.txt at configure time; it registers itself to run again at
# install time (SPARKD_INSTALL_STAGE set), where CMAKE_INSTALL_PREFIX and DESTDIR are final
# (`cmake --install build --prefix /usr` changes the prefix after configuring).
#
# Two files are rewritten while installing rather than copied:
# - sparkd.service: ExecStart= names <prefix>/sbin/sparkd and --config names
#   ${SPARKD_SYSCONFDIR}/sparkd/config.toml, so a /usr/local install starts the binary it
#   installed.
# - config.toml: the repository's file is the development configuration; the installed one
#   is the same text with the lines marked "dev:" set for a system service (socket in
#   /run/sparkd, socket group sparkd, the 8 GiB OS reserve) and each model's path pointing
#   into /var/lib/sparkd/models/<name>. One source of truth, so the two cannot drift apart;
#   a config.toml whose dev lines moved fails the install loudly instead of installing a
#   development configuration. An existing config.toml is never overwritten: the new one is
#   installed beside it as config.toml.dist.

if(NOT SPARKD_INSTALL_STAGE)
  set(SPARKD_SYSCONFDIR "/etc" CACHE PATH
      "Where the configuration is installed (absolute; <dir>/sparkd/config.toml)")
  set(SPARKD_MODELS_DIR "/var/lib/sparkd/models" CACHE PATH
      "Model directories of the installed configuration (<dir>/<model name>)")
  install(CODE "set(SPARKD_INSTALL_STAGE ON)
set(SPARKD_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
set(SPARKD_STAGING_DIR \"${PROJECT_BINARY_DIR}/systemd-install\")
set(SPARKD_SYSCONFDIR \"${SPARKD_SYSCONFDIR}\")
set(SPARKD_MODELS_DIR \"${SPARKD_MODELS_DIR}\")"
          COMPONENT systemd)
  install(SCRIPT ${CMAKE_CURRENT_LIST_FILE} COMPONENT systemd)
  return()
endif()

# ---- install time ------------------------------------------------------------------------

# Installs `text` as <destination>/<name>; DESTDIR is honoured by file(INSTALL).
# A staging directory of its own per install run: two installs at once (ctest -j) must not
# write each other's files.
string(RANDOM LENGTH 12 staging_suffix)
set(staging_dir "${SPARKD_STAGING_DIR}/${staging_suffix}")
function(sparkd_install_text text destination name)
  file(MAKE_DIRECTORY "${staging_dir}")
  file(WRITE "${staging_dir}/${name}" "${text}")
  file(INSTALL "${staging_dir}/${name}" DESTINATION "${destination}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endfunction()

set(systemd_dir "${SPARKD_SOURCE_DIR}/systemd")
set(unit_dir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")

file(READ "${systemd_dir}/sparkd.service" service)
string(REPLACE "ExecStart=/usr/sbin/sparkd --config /etc/sparkd/config.toml"
       "ExecStart=${CMAKE_INSTALL_PREFIX}/sbin/sparkd --config ${SPARKD_SYSCONFDIR}/sparkd/config.toml"
       installed_service "${service}")
if(installed_service STREQUAL service AND NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "systemd/sparkd.service: its ExecStart= line is not the one "
                      "systemd/install.cmake rewrites; update both together")
endif()
sparkd_install_text("${installed_service}" "${unit_dir}" sparkd.service)
file(INSTALL "${systemd_dir}/sparkd.socket" DESTINATION "${unit_dir}")
file(INSTALL "${systemd_dir}/sparkd.sysusers" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/sysusers.d"
     RENAME sparkd.conf)
file(INSTALL "${systemd_dir}/sparkd.tmpfiles" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/tmpfiles.d"
     RENAME sparkd.conf)

# config.toml -> the installed configuration, line by line (file(READ) and string(FIND) keep
# every character; a CMake list would split lines at semicolons).
set(config_source "${SPARKD_SOURCE_DIR}/config.toml")
if(NOT EXISTS "${config_source}")
  message(FATAL_ERROR "${config_source} is missing: nothing to install as the configuration")
endif()
file(READ "${config_source}" config)
set(installed_config
    "# Installed by sparkd's `cmake --install` from the repository's config.toml: the same
# text, with server.socket, server.socket_group, governor.os_reserve and every model's path
# set for a system service. Put model directories under ${SPARKD_MODELS_DIR}/<name>.
#
")
set(section "")
set(model_name "")
set(rewritten_socket OFF)
set(rewritten_socket_group OFF)
set(rewritten_os_reserve OFF)
while(NOT config STREQUAL "")
  string(FIND "${config}" "\n" newline)
  if(newline EQUAL -1)
    set(line "${config}")
    set(config "")
  else()
    string(SUBSTRING "${config}" 0 ${newline} line)
    math(EXPR rest_start "${newline} + 1")
    string(SUBSTRING "${config}" ${rest_start} -1 config)
  endif()
  if(line MATCHES "^\\[")
    set(section "${line}")
  elseif(section STREQUAL "[server]" AND line MATCHES "^socket *=")
    set(line "socket = \"/run/sparkd/sparkd.sock\"")
    set(rewritten_socket ON)
  elseif(section STREQUAL "[server]" AND line MATCHES "^socket_group *=")
    set(line "socket_group = \"sparkd\"")
    set(rewritten_socket_group ON)
  elseif(section STREQUAL "[governor]" AND line MATCHES "^os_reserve *=")
    set(line "os_reserve = \"8GiB\"")
    set(rewritten_os_reserve ON)
  elseif(section STREQUAL "[[models]]" AND line MATCHES "^name *= *\"([^\"]*)\"")
    set(model_name "${CMAKE_MATCH_1}")
  elseif(section STREQUAL "[[models]]" AND line MATCHES "^path *=")
    if(model_name STREQUAL "")
      message(FATAL_ERROR "${config_source}: a [[models]] table gives path before name; "
                          "systemd/install.cmake needs name first to rewrite the path")
    endif()
    set(line "path = \"${SPARKD_MODELS_DIR}/${model_name}\"")
  endif()
  if(line MATCHES "^\\[\\[models\\]\\]")
    set(model_name "")
  endif()
  string(APPEND installed_config "${line}\n")
endwhile()
if(NOT (rewritten_socket AND rewritten_socket_group AND rewritten_os_reserve))
  message(FATAL_ERROR "${config_source}: systemd/install.cmake could not find all of "
                      "[server] socket, [server] socket_group and [governor] os_reserve "
                      "to set for the installed configuration")
endif()

set(config_dir "${SPARKD_SYSCONFDIR}/sparkd")
if(EXISTS "$ENV{DESTDIR}${config_dir}/config.toml")
  message(STATUS "Keeping $ENV{DESTDIR}${config_dir}/config.toml; the new one is config.toml.dist")
  sparkd_install_text("${installed_config}" "${config_dir}" config.toml.dist)
else()
  sparkd_install_text("${installed_config}" "${config_dir}" config.toml)
endif()
file(REMOVE_RECURSE "${staging_dir}")
