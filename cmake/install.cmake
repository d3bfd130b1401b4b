# `cmake --install` puts the headers, libdisco and a CMake package config in
# place, so another project can `find_package(disco)` and link `disco::disco`.
include(CMakePackageConfigHelpers)

install(TARGETS disco EXPORT discoTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/disco DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT discoTargets NAMESPACE disco:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/disco)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/discoConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/discoConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/disco)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/discoConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/discoConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/discoConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/disco)
