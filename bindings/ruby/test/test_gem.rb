# frozen_string_literal: true

# The gem's specification (mp_throttle.gemspec) and where lib/mp_throttle.rb
# looks for the library when MPT_LIB_DIR is not set. test.sh builds and
# installs the gem and runs its example; these are the quick checks.

require_relative "helper"
require "tmpdir"
require "fileutils"

class TestGem < Minitest::Test
  include TestHelper

  GEMSPEC = File.join(RUBY_DIR, "mp_throttle.gemspec")

  def spec
    @spec ||= Gem::Specification.load(GEMSPEC)
  end

  def test_version_is_the_header_and_cargo_version
    header = File.read(HEADER)[/^#define MPT_VERSION_STRING "([^"]+)"$/, 1]
    cargo = File.read(File.join(REPO, "Cargo.toml"))[/^\[package\]\n(?:[^\[].*\n)*?version = "([^"]+)"/, 1]
    refute_nil header
    refute_nil cargo
    assert_equal cargo, header
    assert_equal Gem::Version.new(cargo), spec.version
    assert_equal "mp_throttle", spec.name
  end

  def test_licenses_dependency_and_files
    assert_equal %w[MIT Apache-2.0], spec.licenses
    deps = spec.runtime_dependencies
    assert_equal ["ffi"], deps.map(&:name)
    assert deps.first.requirement.satisfied_by?(Gem.loaded_specs.fetch("ffi").version),
           "the ffi in use (#{Gem.loaded_specs['ffi'].version}) satisfies #{deps.first.requirement}"
    expected = Dir.glob("lib/**/*.rb", base: RUBY_DIR).sort + %w[README.md example.rb]
    assert_equal expected.sort, spec.files.sort
    spec.files.each { |f| assert File.file?(File.join(RUBY_DIR, f)), f }
    assert_equal ["lib"], spec.require_paths
  end

  # In-process: ENV as given while the block runs, restored after.
  def with_env(changes)
    saved = changes.keys.to_h { |k| [k, ENV[k]] }
    changes.each { |k, v| ENV[k] = v }
    yield
  ensure
    saved.each { |k, v| ENV[k] = v }
  end

  def test_library_places_in_this_checkout
    with_env("MPT_LIB_DIR" => nil) do
      places = MpThrottle::Native.library_places
      assert_equal [File.join(REPO, "target", "release"), "this checkout's build"], places.first
      assert_equal [nil, "the dynamic linker's search path"], places.last
      assert_equal File.join(REPO, "target", "release", "libmp_throttle.so.0"),
                   MpThrottle::Native.library_candidates(places).first
      assert_equal %w[libmp_throttle.so.0 libmp_throttle.so], MpThrottle::Native.library_candidates(places).last(2)
    end
    with_env("MPT_LIB_DIR" => "") do
      assert_equal "this checkout's build", MpThrottle::Native.library_places.first.last
    end
    with_env("MPT_LIB_DIR" => "/nowhere") do
      assert_equal [["/nowhere", "MPT_LIB_DIR"]], MpThrottle::Native.library_places
    end
  end

  def test_library_places_through_pkg_config
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "mp_throttle.pc"), <<~PC)
        prefix=#{dir}/prefix
        libdir=${prefix}/lib64
        Name: mp_throttle
        Description: test
        Version: 0.0.0
        Libs: -L${libdir} -lmp_throttle
      PC
      with_env("MPT_LIB_DIR" => nil, "PKG_CONFIG" => nil, "PKG_CONFIG_PATH" => dir) do
        libdir, = MpThrottle::Native.pkg_config_libdir
        skip "pkg-config not found" if libdir.nil? && !system("pkg-config --version", out: File::NULL)
        assert_equal "#{dir}/prefix/lib64", libdir
        assert_includes MpThrottle::Native.library_places, ["#{dir}/prefix/lib64", "pkg-config mp_throttle"]
      end
      with_env("PKG_CONFIG" => File.join(dir, "no-such-pkg-config")) do
        assert_equal [nil, "pkg-config (#{dir}/no-such-pkg-config not found)"], MpThrottle::Native.pkg_config_libdir
      end
    end
  end

  def test_nothing_found_is_a_load_error_that_says_what_to_do
    # A copy of lib/ outside any checkout, no pkg-config package, no
    # LD_LIBRARY_PATH: only a system-wide installed library could load.
    Dir.mktmpdir do |dir|
      FileUtils.cp_r(File.join(RUBY_DIR, "lib"), dir)
      FileUtils.mkdir(File.join(dir, "pc"))
      env = { "MPT_LIB_DIR" => nil, "LD_LIBRARY_PATH" => nil, "PKG_CONFIG_PATH" => nil,
              "PKG_CONFIG_LIBDIR" => File.join(dir, "pc") }
      pid = Process.spawn(env, RbConfig.ruby, "-I", File.join(dir, "lib"), "-e",
                          'begin; require "mp_throttle"; rescue LoadError => e; puts e.message; exit 3; end',
                          out: File.join(dir, "out"), err: File.join(dir, "err"), chdir: dir)
      status = reap(pid)
      skip "libmp_throttle is installed on the dynamic linker's search path" if status.success?
      assert_equal 3, status.exitstatus, File.read(File.join(dir, "err"))
      message = File.read(File.join(dir, "out"))
      assert_includes message, "pkg-config"
      assert_includes message, "the dynamic linker's search path"
      assert_includes message, "make lib"
      assert_includes message, "make install"
      assert_includes message, "MPT_LIB_DIR"
      refute_includes message, "checkout's build"
    end
  end
end
