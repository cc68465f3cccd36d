# frozen_string_literal: true

# The FFI layer against the C header: every function attached with the
# header's types, every struct with the header's sizes and offsets (asked of
# the C compiler), every constant with the header's value.

require_relative "helper"
require "tmpdir"

class TestNative < Minitest::Test
  include TestHelper

  SCALARS = {
    "int32_t" => :int32, "uint32_t" => :uint32, "int64_t" => :int64,
    "uint64_t" => :uint64, "double" => :double, "size_t" => :size_t,
    "bool" => :bool, "mpt_status" => :int32
  }.freeze

  def header
    @header ||= File.read(HEADER)
  end

  # The C type of a declaration such as "const struct mpt_throttle *throttle",
  # as the FFI type the binding must use.
  def ffi_type(decl, param: true)
    decl = decl.strip
    decl = decl.sub(/\b\w+\z/, "").strip if param # drop the parameter's name
    if decl.include?("*")
      decl.gsub(/\s+/, " ") == "const char *" ? :string : :pointer
    else
      SCALARS.fetch(decl) { flunk "type #{decl.inspect} not mapped" }
    end
  end

  # name => [param types, return type, "since" version] from the header.
  def declared_functions
    code = header.gsub(%r{/\*.*?\*/}m, "").gsub(%r{//[^\n]*}, "")
    functions = {}
    code.scan(/^(?:MPT_MUST_USE\s+)?([A-Za-z_][\w ]*?\s*\**)\s*(mpt_\w+)\(([^)]*)\);/m) do |ret, name, params|
      types = params.strip == "void" ? [] : params.split(",").map { |p| ffi_type(p) }
      functions[name.to_sym] = [types, ffi_type(ret, param: false)]
    end
    header.scan(%r{/\*\*((?:(?!\*/).)*)\*/\s*(?:MPT_MUST_USE\s+)?[^;{}/]*?\b(mpt_\w+)\(}m) do |doc, name|
      since = doc[/Since: (\d+\.\d+\.\d+)/, 1]
      functions[name.to_sym] << since.split(".").map(&:to_i) if functions[name.to_sym] && since
    end
    functions
  end

  def version_of(text)
    text.split(".").map(&:to_i)
  end

  def header_version
    %w[MAJOR MINOR PATCH].map { |part| header[/^#define MPT_VERSION_#{part} (\d+)$/, 1].to_i }
  end

  def test_every_header_function_is_bound_with_the_headers_types
    declared = declared_functions
    assert_operator declared.size, :>=, 24, "header parse found too few functions"
    declared.each do |name, (params, result, since)|
      bound = MpThrottle::Native::FUNCTIONS[name]
      refute_nil bound, "#{name} is in the header but not in the binding"
      assert_equal params, bound[0], "#{name}: parameter types"
      assert_equal result, bound[1], "#{name}: return type"
      refute_nil since, "#{name}: no 'Since:' in its doc block"
      assert_equal since, bound[2], "#{name}: version that introduced it"
    end
    # Functions the binding knows that this header lacks must be newer than it.
    (MpThrottle::Native::FUNCTIONS.keys - declared.keys).each do |name|
      since = MpThrottle::Native::FUNCTIONS[name][2]
      assert_operator (since <=> header_version), :>, 0,
                      "#{name} is bound but not declared in #{HEADER}"
    end
  end

  def test_every_function_the_library_has_is_attached
    loaded = MpThrottle.library_version
    MpThrottle::Native::FUNCTIONS.each do |name, (_, _, since)|
      if MpThrottle::Native::MISSING.include?(name)
        # Allowed for a newer function, or one of the version in progress.
        assert_operator (since <=> loaded), :>=, 0,
                        "#{name} (since #{since.join('.')}) missing from library #{loaded.join('.')}"
      else
        assert_respond_to MpThrottle::Native, name
      end
    end
    if (header_version <=> loaded).positive?
      warn "\nnote: #{HEADER} is version #{header_version.join('.')}, the library " \
           "loaded is #{loaded.join('.')}: #{MpThrottle::Native::MISSING.join(', ')} not tested"
    end
  end

  def test_struct_sizes_and_offsets_match_the_c_compiler
    structs = {
      "mpt_options" => MpThrottle::Native::Options,
      "mpt_rate" => MpThrottle::Native::Rate,
      "mpt_summary" => MpThrottle::Native::Summary,
      "mpt_key_stats" => MpThrottle::Native::KeyStats,
      "mpt_keyed_stats" => MpThrottle::Native::KeyedStats
    }
    # The members, in order, as the header declares them.
    structs.each do |c_name, klass|
      body = header[/typedef struct #{c_name} \{(.*?)\} #{c_name};/m, 1]
      refute_nil body, "struct #{c_name} not found in the header"
      members = body.gsub(%r{/\*.*?\*/}m, "").scan(/(\w+);/).flatten.map(&:to_sym)
      assert_equal members, klass.members, "#{c_name}: members"
    end
    # Sizes and offsets, from the C compiler.
    cc = ENV.fetch("CC", "cc")
    lines = structs.flat_map do |c_name, klass|
      ["printf(\"#{c_name} size %zu\\n\", sizeof(struct #{c_name}));"] +
        klass.members.map do |m|
          "printf(\"#{c_name} #{m} %zu %zu\\n\", offsetof(struct #{c_name}, #{m}), " \
            "sizeof(((struct #{c_name} *)0)->#{m}));"
        end
    end
    program = "#include <stdio.h>\n#include <stddef.h>\n#include \"mp_throttle.h\"\n" \
              "int main(void) {\n#{lines.join("\n")}\nreturn 0;\n}\n"
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "layout.c"), program)
      exe = File.join(dir, "layout")
      ok = system(cc, "-std=c99", "-I", INCLUDE_DIR, File.join(dir, "layout.c"), "-o", exe)
      assert ok, "could not compile the layout probe with #{cc} (a C compiler is needed " \
                 "to check the struct layouts against #{HEADER})"
      expected = IO.popen([exe], &:read).lines.map(&:split)
      expected.each do |c_name, field, offset, size|
        klass = structs.fetch(c_name)
        if field == "size"
          assert_equal Integer(offset), klass.size, "sizeof(struct #{c_name})"
        else
          assert_equal Integer(offset), klass.offset_of(field.to_sym), "#{c_name}.#{field} offset"
          assert_equal Integer(size), klass.new.layout[field.to_sym].size, "#{c_name}.#{field} size"
        end
      end
      assert_equal structs.sum { |_, k| k.members.size + 1 }, expected.size
    end
  end

  def test_constants_match_the_header
    statuses = header.scan(/^\s+MPT_STATUS_(\w+) = (\d+),/).to_h { |n, v| [n, Integer(v)] }
    assert_operator statuses.size, :>=, 17
    ours = MpThrottle::Status.constants.to_h { |c| [c.to_s, MpThrottle::Status.const_get(c)] }
    statuses.each { |name, value| assert_equal value, ours[name], "MPT_STATUS_#{name}" }
    # Statuses the binding knows beyond this header are newer ones.
    (ours.keys - statuses.keys).each do |name|
      assert_operator ours[name], :>, statuses.values.max, "MPT_STATUS_#{name} is not in #{HEADER}"
    end
    ours.each_value { |value| refute_nil MpThrottle.strerror(value) }
    hardcaps = header.scan(/^\s+MPT_HARDCAP_(\w+) = (\d+),/).to_h { |n, v| [n.downcase.to_sym, Integer(v)] }
    assert_equal hardcaps, MpThrottle::HARDCAPS
    assert_equal Float(header[/^#define MPT_FOREVER (\S+)$/, 1]), MpThrottle::FOREVER
    assert_equal Integer(header[/^#define MPT_OPTIONS_VERSION (\d+)$/, 1]), MpThrottle::OPTIONS_VERSION
    assert_equal Integer(header[/^#define MPT_AUTO_EMIT_DEFAULT (-?\d+)$/, 1]), MpThrottle::AUTO_EMIT_DEFAULT
    assert_equal Integer(header[/^#define MPT_ABI_VERSION (\d+)$/, 1]), MpThrottle::Native::ABI_VERSION
    assert_equal Integer(header[/^#define MPT_KEY_MAX (\d+)$/, 1]), MpThrottle::KEY_MAX
    { "CAPACITY" => MpThrottle::KEYED_MAX_CAPACITY, "N" => MpThrottle::KEYED_MAX_N,
      "WINDOW" => MpThrottle::KEYED_MAX_WINDOW }.each do |name, value|
      base, shift = header.match(/^#define MPT_KEYED_MAX_#{name} \((\d+) << (\d+)\)$/)&.captures
      refute_nil base, "MPT_KEYED_MAX_#{name} not found in the header"
      assert_equal Integer(base) << Integer(shift), value, "MPT_KEYED_MAX_#{name}"
    end
    # Every failure status has its error class (one per status).
    failures = ours.reject { |name, _| %w[OK TIMEOUT KILLED NO_FUEL].include?(name) }
    failures.each do |name, value|
      error = MpThrottle.error_for(value, :mpt_test)
      refute_equal MpThrottle::Error, error.class, "MPT_STATUS_#{name} has no error class"
      assert_equal value, error.status
    end
    assert_instance_of MpThrottle::NoRoom, MpThrottle.error_for(MpThrottle::Status::NO_ROOM, :f)
  end

  def test_version_and_library_location
    major, minor, patch = MpThrottle.library_version
    assert_equal "#{major}.#{minor}.#{patch}", MpThrottle.version
    unless MpThrottle::Native::MISSING.include?(:mpt_version_string)
      assert_equal MpThrottle.version, MpThrottle::Native.mpt_version_string
    end
    assert_equal 0, major
    assert_operator minor, :>=, 1
    # The library came from MPT_LIB_DIR (test.sh always sets it).
    path = MpThrottle::Native.ffi_libraries.first.name
    assert_equal File.expand_path("libmp_throttle.so.0", ENV.fetch("MPT_LIB_DIR")), path
  end

  def test_strerror_and_clock
    assert_equal "ok", MpThrottle.strerror(MpThrottle::Status::OK)
    assert_equal "invalid argument", MpThrottle.strerror(MpThrottle::Status::INVALID_ARGUMENT)
    assert_equal "unknown status", MpThrottle.strerror(9999)
    a = MpThrottle.clock_now
    b = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
    c = MpThrottle.clock_now
    assert_operator a, :<=, b
    assert_operator b, :<=, c
  end

  def test_missing_library_is_a_clear_load_error
    # Loads from the test's MPT_LIB_DIR; a directory without it is an error
    # that names the directory and the variable.
    out, err, status = run_ruby(["-e", 'require "mp_throttle"; print MpThrottle.version'])
    assert status.success?, err
    assert_equal MpThrottle.version, out
    Dir.mktmpdir do |dir|
      pid = Process.spawn({ "MPT_LIB_DIR" => dir }, RbConfig.ruby, "-I", File.join(RUBY_DIR, "lib"),
                          "-e", 'begin; require "mp_throttle"; rescue LoadError => e; puts e.message; exit 3; end',
                          out: File.join(dir, "out"), err: File.join(dir, "err"))
      assert_equal 3, reap(pid).exitstatus
      message = File.read(File.join(dir, "out"))
      assert_includes message, "MPT_LIB_DIR"
      assert_includes message, File.join(dir, "libmp_throttle.so.0")
    end
  end

  # The keyed functions added last (0.2.0): a build from before them must
  # still load.
  NEWEST_KEYED = %i[mpt_keyed_connect mpt_keyed_get_config mpt_keyed_kill_flag_is_set].freeze

  # Makes, in `dir`, a real libmp_throttle.so.0 that lacks the functions
  # `left_out`, as a build from before them would: this build's own archive
  # (libmp_throttle.a, which `make lib` makes beside the .so in
  # MPT_LIB_DIR), linked with a version script that exports every other
  # function the binding knows.
  def library_without(dir, left_out)
    archive = File.join(ENV.fetch("MPT_LIB_DIR"), "libmp_throttle.a")
    cc = ENV.fetch("CC", "cc")
    unless File.file?(archive)
      flunk "#{archive} not found (CI is set)" if ENV["CI"]
      skip "#{archive} not found: a library without #{left_out.join(', ')} is not made"
    end
    exported = MpThrottle::Native::FUNCTIONS.keys - left_out
    script = File.join(dir, "exports.map")
    File.write(script, "{ global: #{exported.map { |f| "#{f};" }.join(' ')} local: *; };\n")
    ok = system(cc, "-shared", "-o", File.join(dir, "libmp_throttle.so.0"),
                "-Wl,-soname,libmp_throttle.so.0", "-Wl,--whole-archive", archive,
                "-Wl,--no-whole-archive", "-Wl,--version-script=#{script}",
                "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc")
    assert ok, "#{cc} could not link #{archive} into a library"
  end

  def test_a_library_without_the_newest_keyed_functions_still_loads
    # A real library that lacks mpt_keyed_connect, mpt_keyed_get_config and
    # mpt_keyed_kill_flag_is_set loads; keyed throttles work without what
    # needs them: given values are kept (nil for one opened by name, but
    # its capacity), KeyedThrottle.connect and kill_flag? raise
    # MpThrottle::Unsupported naming the version that has them.
    name = unique_name("old-lib")
    Dir.mktmpdir do |dir|
      library_without(dir, NEWEST_KEYED)
      code = <<~RUBY
        require "mp_throttle"
        K = MpThrottle::KeyedThrottle
        out = [MpThrottle::Native.ffi_libraries.first.name, MpThrottle::Native::MISSING.sort]
        k = K.new(2, 60, 4).start
        out << [k.has_fuel?("a"), k.has_fuel?("a"), k.has_fuel?("a"), k.max_n, k.per, k.hardcap,
                k.capacity, k.created?]
        a = K.create_named(#{name.inspect}, 3, 30, 8, hardcap: :one)
        b = K.open(#{name.inspect})
        out << [b.max_n, b.per, b.hardcap, b.capacity, b.created?]
        out << [a.max_n, a.per, a.hardcap, a.capacity, a.created?]
        [-> { K.connect("redis://127.0.0.1:1", "x", 2, 1) }, -> { b.kill_flag? }].each do |call|
          call.call
          out << nil
        rescue MpThrottle::Unsupported => e
          out << [e.status_name, e.function, e.message.include?("0.2.0 or later")]
        end
        a.start
        b.kill
        out << [a.has_fuel?("z"), a.running?]
        print Marshal.dump(out)
      RUBY
      pid = Process.spawn({ "MPT_LIB_DIR" => dir }, RbConfig.ruby, "-I", File.join(RUBY_DIR, "lib"),
                          "-e", code, out: File.join(dir, "out"), err: File.join(dir, "err"))
      status = reap(pid, limit: 60)
      assert status.success?, File.read(File.join(dir, "err"))
      out = Marshal.load(File.binread(File.join(dir, "out"))) # rubocop:disable Security/MarshalLoad
      assert_equal [File.join(dir, "libmp_throttle.so.0"), NEWEST_KEYED.sort], out[0, 2]
      assert_equal [true, true, false, 2, 60.0, :limit, 4, nil], out[2]
      assert_equal [nil, nil, nil, 8, nil], out[3]
      assert_equal [3, 30.0, :one, 8, nil], out[4]
      assert_equal [:unsupported, :mpt_keyed_connect, true], out[5]
      assert_equal [:unsupported, :mpt_keyed_kill_flag_is_set, true], out[6]
      assert_equal [false, true], out[7]
    end
  ensure
    unlink_names
  end
end
