# frozen_string_literal: true

# mp_throttle for Ruby: throttle and monitor many workers (threads, forked
# children, unrelated processes in any language) so that together they start
# at most max_n pieces of work per `per` seconds.
#
# A thin binding of the C library libmp_throttle (include/mp_throttle.h)
# through the ffi gem. MpThrottle::Native is the raw C API, one
# attach_function per C function; MpThrottle::Throttle is the Ruby face, with
# the names of the Python package mp_throttle 0.0.5; MpThrottle::KeyedThrottle
# is many throttles in one, a schedule per key (the C mpt_keyed_* functions). README.md beside this
# directory says how to use it; the header says what each call guarantees.
#
# Where the library is loaded from (the first of libmp_throttle.so.0,
# libmp_throttle.so that loads; Native.library_places lists the places):
# - $MPT_LIB_DIR when that is set, and nowhere else;
# - else, when this file is bindings/ruby/lib/mp_throttle.rb of a checkout
#   of the repository, the checkout's build: target/release (`make lib`);
# - then the libdir of the pkg-config package mp_throttle (the mp_throttle.pc
#   that `make install` writes; PKG_CONFIG_PATH as pkg-config reads it);
# - then the dynamic linker's search path (LD_LIBRARY_PATH, ld.so.cache, the
#   default directories).

require "ffi"

module MpThrottle
  # The raw C API. Every function returns an mpt_status (an Integer, 0 = OK)
  # and writes its results through pointer arguments, exactly as in C.
  module Native
    extend FFI::Library

    # The ABI number in the SONAME this binding was written for.
    ABI_VERSION = 0

    # Library file names, in order of preference.
    LIBRARY_NAMES = ["libmp_throttle.so.#{ABI_VERSION}", "libmp_throttle.so"].freeze

    # The repository checkout this file belongs to, or nil: the directory
    # three levels up when it holds Cargo.toml and this very file as
    # bindings/ruby/lib/mp_throttle.rb (an installed gem is not in one).
    def self.checkout_root
      root = File.expand_path("../../..", __dir__)
      me = File.join(root, "bindings", "ruby", "lib", "mp_throttle.rb")
      return nil unless File.file?(File.join(root, "Cargo.toml")) && File.file?(me)

      File.identical?(me, __FILE__) ? root : nil
    end

    # [libdir, nil] from `pkg-config --variable=libdir mp_throttle`
    # ($PKG_CONFIG, else pkg-config), or [nil, why] when pkg-config or the
    # package is not there.
    def self.pkg_config_libdir
      command = ENV["PKG_CONFIG"]
      command = "pkg-config" if command.nil? || command.empty?
      dir = IO.popen([command, "--variable=libdir", "mp_throttle"], err: File::NULL, &:read).strip
      return [dir, nil] if $?.success? && !dir.empty?

      [nil, "pkg-config (no mp_throttle package)"]
    rescue SystemCallError
      [nil, "pkg-config (#{command} not found)"]
    end

    # Where to look for the library: [[directory, why], ...] in order; a nil
    # directory stands for the dynamic linker's search path, false for
    # pkg-config when it gave none (why says why).
    def self.library_places
      dir = ENV["MPT_LIB_DIR"]
      return [[File.expand_path(dir), "MPT_LIB_DIR"]] if dir && !dir.empty?

      places = []
      root = checkout_root
      places << [File.join(root, "target", "release"), "this checkout's build"] if root
      libdir, why_not = pkg_config_libdir
      places << if libdir
                  [File.expand_path(libdir), "pkg-config mp_throttle"]
                else
                  [false, why_not]
                end
      places.uniq(&:first) << [nil, "the dynamic linker's search path"]
    end

    # The files (or, for the dynamic linker, names) to load, in order.
    def self.library_candidates(places = library_places)
      places.flat_map do |dir, _why|
        next [] if dir == false

        dir ? LIBRARY_NAMES.map { |name| File.join(dir, name) } : LIBRARY_NAMES
      end
    end

    # The LoadError's message: where it looked and what to do.
    def self.load_error_message(places, cause)
      looked = places.map { |dir, why| dir ? "#{dir} (#{why})" : why }.join(", ")
      advice = if places.first.last == "MPT_LIB_DIR"
                 "MPT_LIB_DIR is set, so nothing else was searched: set MPT_LIB_DIR to the " \
                   "directory that holds libmp_throttle.so.#{ABI_VERSION}, or unset it"
               else
                 "Build the library with `make lib` in the repository, or install it with " \
                   "`make install` (then run ldconfig, or set LD_LIBRARY_PATH, if the dynamic " \
                   "linker does not search its directory), or set MPT_LIB_DIR to the directory " \
                   "that holds libmp_throttle.so.#{ABI_VERSION}"
               end
      "mp_throttle: cannot load libmp_throttle (tried #{library_candidates(places).join(', ')}; " \
        "looked in #{looked}). #{advice}. #{cause}"
    end

    places = library_places
    begin
      ffi_lib library_candidates(places)
    rescue LoadError => e
      raise LoadError, load_error_message(places, e.message)
    end

    # struct mpt_options (version 2: 48 bytes; version 1 is its first 40,
    # without group_shared). Fill with mpt_options_init.
    class Options < FFI::Struct
      layout :version, :uint32,
             :as_throttle, :uint32,
             :as_monitor, :uint32,
             :auto_emit, :int32,
             :hardcap, :uint32,
             :timer_slack_ns, :uint32,
             :refresh_s, :double,
             :spin_s, :double,
             :group_shared, :uint32
    end

    # struct mpt_rate (16 bytes).
    class Rate < FFI::Struct
      layout :seconds_between, :double,
             :per_second, :double
    end

    # struct mpt_summary (32 bytes).
    class Summary < FFI::Struct
      layout :runtime_s, :double,
             :total, :uint64,
             :mean_seconds_between, :double,
             :mean_per_second, :double
    end

    # struct mpt_key_stats (24 bytes): what mpt_keyed_key_stats reports.
    class KeyStats < FFI::Struct
      layout :in_table, :uint32,
             :granted, :uint64,
             :since_ns, :int64
    end

    # struct mpt_keyed_stats (64 bytes): what mpt_keyed_get_stats reports.
    class KeyedStats < FFI::Struct
      layout :live_keys, :uint64,
             :capacity, :uint64,
             :evictions, :uint64,
             :added, :uint64,
             :summary, Summary
    end

    # Every function of mp_throttle.h: name => [parameter types, return type,
    # library version that introduced it]. `:string` is a `const char *` in,
    # `:pointer` any other pointer. The tests compare this table with the
    # header.
    FUNCTIONS = {
      mpt_strerror: [[:int32], :string, [0, 1, 0]],
      mpt_last_error_message: [%i[pointer size_t pointer], :int32, [0, 1, 0]],
      mpt_latest: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_mean: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_lo_hi: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_hi_lo: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_get_summary: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_options_init: [%i[pointer uint32], :int32, [0, 1, 0]],
      mpt_throttle_new: [%i[uint64 double pointer pointer], :int32, [0, 1, 0]],
      mpt_throttle_create_named: [%i[string uint64 double pointer pointer], :int32, [0, 1, 0]],
      mpt_throttle_open: [%i[string pointer pointer], :int32, [0, 1, 0]],
      mpt_throttle_unlink: [%i[string], :int32, [0, 1, 0]],
      mpt_throttle_connect: [%i[string string uint64 double pointer pointer], :int32, [0, 2, 0]],
      mpt_throttle_unlink_url: [%i[string string], :int32, [0, 2, 0]],
      mpt_throttle_free: [%i[pointer], :int32, [0, 1, 0]],
      mpt_start: [%i[pointer], :int32, [0, 1, 0]],
      mpt_stop: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_await_fuel: [%i[pointer double pointer], :int32, [0, 1, 0]],
      mpt_has_fuel: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_await_fuel_n: [%i[pointer uint64 double pointer], :int32, [0, 2, 0]],
      mpt_has_fuel_n: [%i[pointer uint64 pointer], :int32, [0, 2, 0]],
      mpt_peek_fuel: [%i[pointer uint64 pointer pointer], :int32, [0, 2, 0]],
      mpt_set_rate: [%i[pointer uint64 double], :int32, [0, 2, 0]],
      mpt_cancel_new: [%i[pointer], :int32, [0, 2, 0]],
      mpt_cancel_free: [%i[pointer], :int32, [0, 2, 0]],
      mpt_cancel_fire: [%i[pointer], :int32, [0, 2, 0]],
      mpt_cancel_reset: [%i[pointer], :int32, [0, 2, 0]],
      mpt_await_fuel_cancellable: [%i[pointer uint64 double pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_new: [%i[uint64 double uint64 pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_create_named: [%i[string uint64 double uint64 pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_open: [%i[string pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_connect: [%i[string string uint64 double pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_free: [%i[pointer], :int32, [0, 2, 0]],
      mpt_keyed_start: [%i[pointer], :int32, [0, 2, 0]],
      mpt_keyed_stop: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_kill: [%i[pointer], :int32, [0, 2, 0]],
      mpt_keyed_is_running: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_kill_flag_is_set: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_get_config: [%i[pointer pointer pointer pointer pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_await_fuel: [%i[pointer pointer size_t uint64 double pointer], :int32, [0, 2, 0]],
      mpt_keyed_await_fuel_cancellable: [%i[pointer pointer size_t uint64 double pointer pointer],
                                         :int32, [0, 2, 0]],
      mpt_keyed_has_fuel: [%i[pointer pointer size_t uint64 pointer], :int32, [0, 2, 0]],
      mpt_keyed_peek: [%i[pointer pointer size_t uint64 pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_forget: [%i[pointer pointer size_t pointer], :int32, [0, 2, 0]],
      mpt_keyed_key_stats: [%i[pointer pointer size_t pointer], :int32, [0, 2, 0]],
      mpt_keyed_get_stats: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_latest: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_keyed_mean: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_get_rate: [%i[pointer pointer pointer], :int32, [0, 2, 0]],
      mpt_get_options: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_throttle_created: [%i[pointer pointer], :int32, [0, 2, 0]],
      mpt_emit: [%i[pointer], :int32, [0, 1, 0]],
      mpt_emit_at: [%i[pointer int64], :int32, [0, 1, 0]],
      mpt_kill: [%i[pointer], :int32, [0, 1, 0]],
      mpt_kill_flag_is_set: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_is_running: [%i[pointer pointer], :int32, [0, 1, 0]],
      mpt_clock_now: [%i[pointer], :int32, [0, 1, 0]],
      mpt_version: [%i[pointer pointer pointer], :int32, [0, 1, 0]],
      mpt_version_string: [[], :string, [0, 2, 0]]
    }.freeze

    # Calls that can sleep: attached with `blocking: true`, so that they run
    # without the GVL and the other Ruby threads go on meanwhile. (The call
    # still runs on the calling thread's own OS thread, so the library's
    # thread-local error message is read right after it by that thread.)
    # mpt_stop and mpt_throttle_free join this process's monitor thread;
    # create_named and open wait up to 2 s for another process's creation;
    # connect and unlink_url talk to a Redis server (up to 2 s per step).
    # The keyed throttles' calls likewise.
    BLOCKING = %i[
      mpt_await_fuel mpt_await_fuel_n mpt_await_fuel_cancellable mpt_stop mpt_throttle_free
      mpt_throttle_create_named mpt_throttle_open mpt_throttle_connect mpt_throttle_unlink_url
      mpt_keyed_await_fuel mpt_keyed_await_fuel_cancellable mpt_keyed_stop mpt_keyed_free
      mpt_keyed_create_named mpt_keyed_open mpt_keyed_connect
    ].freeze

    # Functions of a newer library than the one loaded (see FUNCTIONS), which
    # were therefore not attached.
    MISSING = []

    library = ffi_libraries.first
    FUNCTIONS.each do |name, (params, result, since)|
      unless library.find_function(name.to_s)
        raise LoadError, "mp_throttle: #{library.name} lacks #{name}" if since == [0, 1, 0]

        MISSING << name
        next
      end
      attach_function name, params, result, blocking: BLOCKING.include?(name)
    end
    MISSING.freeze
  end

  # Status codes (enum mpt_status). Values never change.
  module Status
    OK = 0
    TIMEOUT = 1
    KILLED = 2
    NO_FUEL = 3
    NOT_RUNNING = 4
    NULL_POINTER = 5
    BAD_HANDLE = 6
    INVALID_ARGUMENT = 7
    WRONG_STATE = 8
    MONITOR_OFF = 9
    SYSTEM = 10
    UNSUPPORTED = 11
    CORRUPT = 12
    PANIC = 13
    NOT_FOUND = 14
    PERMISSION_DENIED = 15
    MISMATCH = 16
    CANCELLED = 17
    UNREACHABLE = 18
    NO_ROOM = 19
  end

  # Hardcaps (enum mpt_hardcap), by the symbol Throttle.new takes.
  HARDCAPS = { limit: 0, one: 1, none: 2, window: 3 }.freeze
  # MPT_FOREVER: the C timeout "no timeout" (a nil timeout in Ruby).
  FOREVER = -1.0
  # MPT_OPTIONS_VERSION (2). Options are filled as version 1 (what libraries
  # before group sharing know) unless group_shared is asked.
  OPTIONS_VERSION = 2
  # MPT_AUTO_EMIT_DEFAULT.
  AUTO_EMIT_DEFAULT = -1
  # MPT_KEY_MAX: the longest key of a KeyedThrottle, in bytes.
  KEY_MAX = 128
  # MPT_KEYED_MAX_CAPACITY: the most keys a KeyedThrottle holds.
  KEYED_MAX_CAPACITY = 1 << 26
  # MPT_KEYED_MAX_N: the largest max_n of a KeyedThrottle ...
  KEYED_MAX_N = 1 << 24
  # ... and MPT_KEYED_MAX_WINDOW with hardcap: :window.
  KEYED_MAX_WINDOW = 1 << 16

  # Something the library refused. #status is the mpt_status code, #detail
  # the library's own message for the failed call, #function the C function.
  class Error < StandardError
    attr_reader :status, :detail, :function

    def initialize(status, detail = nil, function = nil)
      @status = status
      @detail = detail
      @function = function
      text = "#{MpThrottle.strerror(status)} (status #{status})"
      text = "#{function}: #{text}" if function
      text = "#{text}: #{detail}" if detail && !detail.empty?
      super(text)
    end

    # The status as a Symbol, e.g. :invalid_argument.
    def status_name
      Status.constants.find { |c| Status.const_get(c) == status }&.downcase
    end
  end

  # One subclass per failure status; #status says which.
  class NullPointer < Error; end
  class BadHandle < Error; end
  class InvalidArgument < Error; end
  class WrongState < Error; end
  class NotRunning < Error; end
  class MonitorOff < Error; end
  class SystemError < Error; end
  class Unsupported < Error; end
  class Corrupt < Error; end
  class Panic < Error; end
  class NotFound < Error; end
  class PermissionDenied < Error; end
  class Mismatch < Error; end
  class Cancelled < Error; end
  # The store that holds the throttle could not be reached (a store on
  # another machine; never a throttle in shared memory).
  class Unreachable < Error; end
  # A KeyedThrottle's table has no room for a new key: it holds its
  # capacity of keys (or the slots the key may go in are taken) and every
  # one of them still holds back fuel, so none may be dropped for it.
  # Nothing was taken.
  class NoRoom < Error; end
  # A Throttle used after #close (the library never sees the call).
  class ClosedError < BadHandle
    def initialize
      super(Status::BAD_HANDLE, "the throttle is closed")
    end
  end

  ERRORS = {
    Status::NOT_RUNNING => NotRunning,
    Status::NULL_POINTER => NullPointer,
    Status::BAD_HANDLE => BadHandle,
    Status::INVALID_ARGUMENT => InvalidArgument,
    Status::WRONG_STATE => WrongState,
    Status::MONITOR_OFF => MonitorOff,
    Status::SYSTEM => SystemError,
    Status::UNSUPPORTED => Unsupported,
    Status::CORRUPT => Corrupt,
    Status::PANIC => Panic,
    Status::NOT_FOUND => NotFound,
    Status::PERMISSION_DENIED => PermissionDenied,
    Status::MISMATCH => Mismatch,
    Status::CANCELLED => Cancelled,
    Status::UNREACHABLE => Unreachable,
    Status::NO_ROOM => NoRoom
  }.freeze
  private_constant :ERRORS

  # mpt_strerror: a status in words.
  def self.strerror(status)
    Native.mpt_strerror(status).dup.force_encoding(Encoding::UTF_8)
  end

  # The calling thread's last error message (mpt_last_error_message).
  def self.last_error_message
    length = FFI::MemoryPointer.new(:size_t)
    size = 256
    loop do
      buf = FFI::MemoryPointer.new(:char, size)
      return "" unless Native.mpt_last_error_message(buf, size, length).zero?

      full = length.read(:size_t)
      return buf.read_string(full).force_encoding(Encoding::UTF_8) if full < size

      size = full + 1
    end
  end

  # The exception for a failed call: read the thread-local message now, on
  # the thread (and so the OS thread) that made the call, before any other
  # mp_throttle call of this thread can replace it.
  def self.error_for(status, function)
    (ERRORS[status] || Error).new(status, last_error_message, function)
  end

  # Raise unless `status` is OK.
  def self.check(status, function)
    raise error_for(status, function) unless status == Status::OK

    nil
  end

  # CLOCK_MONOTONIC now, in nanoseconds (mpt_clock_now): the clock of grant
  # times and of Throttle#emit timestamps. Same clock as
  # Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond).
  def self.clock_now
    out = FFI::MemoryPointer.new(:int64)
    check(Native.mpt_clock_now(out), :mpt_clock_now)
    out.read(:int64)
  end

  # The version of the library loaded, as [major, minor, patch].
  def self.library_version
    @library_version ||= begin
      parts = Array.new(3) { FFI::MemoryPointer.new(:uint32) }
      check(Native.mpt_version(*parts), :mpt_version)
      parts.map { |p| p.read(:uint32) }.freeze
    end
  end

  # Whether Thread#raise, Thread#kill, Timeout and Ctrl-C can end a
  # Throttle#await_fuel at once: true with library 0.2.0 or later
  # (mpt_await_fuel_cancellable). See README.md.
  def self.interruptible_waits?
    !Native::MISSING.include?(:mpt_await_fuel_cancellable)
  end

  # The loaded library's version as a String, e.g. "0.1.0".
  def self.version
    library_version.join(".")
  end

  # What Throttle#stop and Throttle#summary return: mp_throttle's stop()
  # tuple, by name (#to_a gives it in that order).
  Summary = Struct.new(:runtime, :total, :mean_seconds_between, :mean_per_second)

  # Ruby values to C arguments and C results to Ruby values, for Throttle.
  module Args
    module_function

    # Keyword options to a filled struct mpt_options.
    def build_options(as_throttle: true, as_monitor: true, auto_emit: nil,
                      hardcap: :limit, rf_rate: nil, timer_slack_ns: nil, spin_s: nil,
                      group_shared: false)
      options = Native::Options.new
      shared = bool(group_shared, "group_shared") == 1
      MpThrottle.check(Native.mpt_options_init(options, shared ? OPTIONS_VERSION : 1),
                       :mpt_options_init)
      options[:group_shared] = 1 if shared
      options[:as_throttle] = bool(as_throttle, "as_throttle")
      options[:as_monitor] = bool(as_monitor, "as_monitor")
      options[:auto_emit] = auto_emit.nil? ? AUTO_EMIT_DEFAULT : bool(auto_emit, "auto_emit")
      options[:hardcap] = hardcap_code(hardcap)
      options[:refresh_s] = seconds(rf_rate, "rf_rate") unless rf_rate.nil?
      options[:timer_slack_ns] = uint32(timer_slack_ns, "timer_slack_ns") unless timer_slack_ns.nil?
      options[:spin_s] = seconds(spin_s, "spin_s", zero: true) unless spin_s.nil?
      options
    end

    def bool(value, what)
      return 1 if value == true
      return 0 if value == false

      raise TypeError, "#{what} must be true or false, not #{value.inspect}"
    end

    def hardcap_code(value)
      key = value.is_a?(String) ? value.to_sym : value
      HARDCAPS.fetch(key) do
        raise ArgumentError, "hardcap must be one of #{HARDCAPS.keys.map(&:inspect).join(', ')}, " \
                             "not #{value.inspect}"
      end
    end

    # A hardcap as its Symbol (:limit for "limit"; raises as hardcap_code).
    def hardcap_name(value)
      HARDCAPS.key(hardcap_code(value))
    end

    # A non-negative Integer that fits a uint64_t (the library checks the
    # range it accepts and says why it refuses).
    def count(value, what)
      raise TypeError, "#{what} must be an Integer, not #{value.class}" unless value.is_a?(Integer)
      unless value.between?(0, 2**64 - 1)
        raise ArgumentError, "#{what} must be between 0 and 2**64-1, not #{value}"
      end

      value
    end

    def uint32(value, what)
      raise TypeError, "#{what} must be an Integer, not #{value.class}" unless value.is_a?(Integer)
      raise ArgumentError, "#{what} must be between 0 and 2**32-1" unless value.between?(0, 2**32 - 1)

      value
    end

    def int64(value, what)
      unless value.between?(-2**63, 2**63 - 1)
        raise ArgumentError, "#{what} must fit in 64 bits, not #{value}"
      end

      value
    end

    # Seconds as a Float. NaN and infinities go through: the library
    # refuses them with its own message. A negative timeout would be taken
    # for MPT_FOREVER (-1.0) or refused, so Ruby refuses it first.
    def seconds(value, what, zero: false)
      raise TypeError, "#{what} must be Numeric seconds, not #{value.class}" unless value.is_a?(Numeric)

      value = value.to_f
      if zero && value.negative?
        raise ArgumentError, "#{what} must be >= 0 seconds (nil: no timeout), not #{value}"
      end

      value
    end

    def name_arg(name)
      raise TypeError, "name must be a String, not #{name.class}" unless name.is_a?(String)
      raise ArgumentError, "name must not contain NUL bytes" if name.include?("\0")

      name
    end

    # A key of a KeyedThrottle as [pointer, length]: its bytes copied out of
    # Ruby's heap (the call may run without the GVL). A String of UTF-8,
    # US-ASCII or binary (ASCII-8BIT) is used as its bytes, NUL bytes
    # included; one of another encoding is transcoded to UTF-8 first, so
    # that equal text is one key. The library checks the length (0 to
    # KEY_MAX bytes).
    def key_arg(key)
      raise TypeError, "a key must be a String, not #{key.class}" unless key.is_a?(String)

      unless [Encoding::UTF_8, Encoding::BINARY, Encoding::US_ASCII].include?(key.encoding)
        key = key.encode(Encoding::UTF_8)
      end
      pointer = FFI::MemoryPointer.new(:char, [key.bytesize, 1].max)
      pointer.put_bytes(0, key)
      [pointer, key.bytesize]
    end

    def url_arg(url)
      raise TypeError, "url must be a String, not #{url.class}" unless url.is_a?(String)
      raise ArgumentError, "url must not contain NUL bytes" if url.include?("\0")

      url
    end

    # The URL without its password (redis://user:***@host), as the
    # library's messages show it: an inspect may end up in a log.
    def shown_url(url)
      url.sub(%r{\A([^:/]+://[^:@/]*:)[^@/]*@}, '\1***@')
    end

    def summary_of(native)
      Summary.new(native[:runtime_s], native[:total], native[:mean_seconds_between],
                  native[:mean_per_second])
    end

    # What a wait that took nothing returns: false (timeout), nil (killed).
    def not_taken(status)
      status == Status::TIMEOUT ? false : nil
    end

    def require_function(function)
      return unless Native::MISSING.include?(function)

      since = Native::FUNCTIONS.fetch(function)[2].join(".")
      raise Unsupported.new(Status::UNSUPPORTED,
                            "needs libmp_throttle #{since} or later; the one loaded is " \
                            "#{MpThrottle.version}", function)
    end
  end
  private_constant :Args

  # A wait that an interrupt of the calling thread (Thread#raise,
  # Thread#kill, Timeout, Ctrl-C, exit) ends at once: the block, given a
  # new cancellation token, makes the cancellable C call in a helper
  # thread, while the calling thread waits for the helper in Thread#value,
  # which an interrupt can end; the token is fired then, which ends the
  # wait having taken nothing (the units it had reserved go to the waiters
  # behind it). Returns the block's status; raises the error of a status
  # neither OK nor in `ok` (read in the helper's thread). Call it inside a
  # throttle's #call (asynchronous interrupts deferred): only the join of
  # the helper takes them.
  module Interruptible
    module_function

    def wait(function, ok, &cancellable)
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(Native.mpt_cancel_new(out), :mpt_cancel_new)
      token = out.read_pointer
      # The helper makes the blocking call (without the GVL); this thread
      # waits for it in Thread#value, which interrupts can end.
      helper = Thread.new do
        Thread.current.name = "mp_throttle await_fuel"
        status = cancellable.call(token)
        # A failure's message is in the helper's thread: read it there.
        failed = !(status.zero? || ok.include?(status))
        [status, failed ? MpThrottle.error_for(status, function) : nil]
      end
      begin
        status, error = Thread.handle_interrupt(Object => :immediate) { helper.value }
        raise error if error

        status
      ensure
        # Interrupted: the token ends the wait, which gives back any unit it
        # had reserved (the waiters behind it move up); the helper must be
        # done with the handle and the token before they can go.
        if helper.alive?
          Native.mpt_cancel_fire(token)
          helper.join
        end
        Native.mpt_cancel_free(token)
      end
    end
  end
  private_constant :Interruptible

  # A throttle: max_n units of fuel per `per` seconds, shared by every thread
  # of this process, every child forked after it was made and, for a named
  # throttle, every process that opens the name.
  #
  # Thread-safe: every method may be called from any thread at any time,
  # #close included (a handle closed while another thread waits in it is
  # released when that call returns).
  class Throttle
    # Throttle.new(max_n, per, **options): an anonymous throttle, shared
    # with the children forked after it.
    #
    # - max_n: Integer >= 1; per: seconds (Numeric > 0).
    # - as_throttle: true (ration fuel) or false (fuel is always there,
    #   counting only).
    # - as_monitor: true (a monitor thread keeps the statistics, started by
    #   #start in this process) or false.
    # - auto_emit: nil (= as_throttle), true (each unit of fuel taken counts
    #   one emission) or false (workers call #emit).
    # - hardcap: :limit (default), :one, :none or :window (README).
    # - rf_rate: seconds between monitor refreshes (default 0.01).
    # - timer_slack_ns, spin_s: how this process's waiters sleep (header).
    # - group_shared: create_named only: false (default) keeps the named
    #   throttle to this user; true shares it with the creator's group
    #   (mode 0660), whose users open it with group_shared: true. Part of
    #   the configuration (the other value is MpThrottle::Mismatch).
    #
    # Raises MpThrottle::InvalidArgument (bad numbers, both modes off, ...),
    # ArgumentError or TypeError for values Ruby cannot pass at all.
    def initialize(max_n, per, **options)
      options = Args.build_options(**options)
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(
        Native.mpt_throttle_new(Args.count(max_n, "max_n"), Args.seconds(per, "per"),
                                options, out),
        :mpt_throttle_new
      )
      adopt(out.read_pointer, nil)
    end

    # A named throttle that any process of this user can open by `name`
    # (1 to 200 bytes, no '/'): creates it, or opens it if it exists with
    # the same configuration (MpThrottle::Mismatch otherwise). Remove the
    # name with Throttle.unlink. With a block: yields the throttle, closes
    # it afterwards and returns the block's value.
    def self.create_named(name, max_n, per, **options, &block)
      options = Args.build_options(**options)
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(
        Native.mpt_throttle_create_named(Args.name_arg(name), Args.count(max_n, "max_n"),
                                         Args.seconds(per, "per"), options, out),
        :mpt_throttle_create_named
      )
      from_handle(out.read_pointer, name, &block)
    end

    # Opens the named throttle `name`, adopting its configuration. Only
    # timer_slack_ns and spin_s apply (how this process waits), and
    # group_shared: true also accepts another user's throttle made
    # group-shared for one of this process's groups (another user's throttle
    # is MpThrottle::PermissionDenied otherwise). MpThrottle::NotFound if
    # there is no such name. With a block: as create_named.
    def self.open(name, timer_slack_ns: nil, spin_s: nil, group_shared: false, &block)
      options = Args.build_options(timer_slack_ns: timer_slack_ns, spin_s: spin_s,
                                   group_shared: group_shared)
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(Native.mpt_throttle_open(Args.name_arg(name), options, out),
                       :mpt_throttle_open)
      from_handle(out.read_pointer, name, &block)
    end

    # Removes a name (mpt_throttle_unlink). Processes that have it open go
    # on using it. MpThrottle::NotFound if there is no such name.
    def self.unlink(name)
      MpThrottle.check(Native.mpt_throttle_unlink(Args.name_arg(name)), :mpt_throttle_unlink)
      nil
    end

    # The throttle `name` in the Redis server at `url`
    # ("redis://[user[:password]@]host[:port][/db]" or
    # "redis+unix:///path/to/socket"): makes it, or joins it if it exists
    # there with the same configuration (MpThrottle::Mismatch otherwise).
    # Processes on any number of hosts, each with its own Throttle, share
    # one rate, decided by the server on its own clock; every method works
    # as on any other throttle. Library 0.2.0 or later.
    #
    # - name: 1 to 200 bytes of UTF-8 without "{" or "}".
    # - max_n, per and the options: as for Throttle.new, but `per` must be a
    #   whole number of microseconds, and there is no group_shared (the
    #   server decides who may use it). All but timer_slack_ns and spin_s
    #   are the throttle's configuration.
    #
    # MpThrottle::Unreachable if nothing answers at `url` (or not in 2 s,
    # or not Redis), MpThrottle::PermissionDenied if the server refuses the
    # credentials, MpThrottle::InvalidArgument for a bad URL, name or
    # number, MpThrottle::Unsupported for a library without the Redis
    # store. With a block: as create_named.
    #
    # Closing it leaves the throttle on the server for the other hosts:
    # Throttle.unlink_url removes it. A connection belongs to the process
    # that made it: a forked child connects again, the first time it uses
    # the Throttle it inherited.
    def self.connect(url, name, max_n, per, **options, &block)
      Args.require_function(:mpt_throttle_connect)
      if options.key?(:group_shared)
        raise ArgumentError, "a Redis throttle takes no group_shared: the server decides who " \
                             "may use it"
      end
      args = [Args.url_arg(url).dup.freeze, Args.name_arg(name).dup.freeze,
              Args.count(max_n, "max_n"), Args.seconds(per, "per"), options.dup.freeze].freeze
      from_handle(connect_handle(args), name, args, &block)
    end

    # Removes the throttle `name` from the Redis server at `url`
    # (mpt_throttle_unlink_url): the processes that use it, on every host,
    # find it killed (their waits return nil) and do not make it again; a
    # later Throttle.connect makes a new one. MpThrottle::NotFound if the
    # server has no such throttle, MpThrottle::Unreachable if nothing
    # answers at `url`. Library 0.2.0 or later.
    def self.unlink_url(url, name)
      Args.require_function(:mpt_throttle_unlink_url)
      MpThrottle.check(Native.mpt_throttle_unlink_url(Args.url_arg(url), Args.name_arg(name)),
                       :mpt_throttle_unlink_url)
      nil
    end

    # A new handle on the Redis throttle of Throttle.connect's arguments.
    def self.connect_handle(args)
      url, name, max_n, per, options = args
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(
        Native.mpt_throttle_connect(url, name, max_n, per, Args.build_options(**options), out),
        :mpt_throttle_connect
      )
      out.read_pointer
    end
    private_class_method :connect_handle

    # The name of a named throttle, nil for an anonymous one.
    attr_reader :name

    # The Redis server's URL of a throttle made by Throttle.connect (as
    # given), nil for one in shared memory.
    def url
      @connect&.first
    end

    # Starts (or resumes) the throttle: clears the kill flag, opens the tank
    # (its first unit is there at once, then one every per/max_n) and, with
    # as_monitor, starts the monitor thread in this process.
    # MpThrottle::WrongState if it is running already. Returns self.
    def start
      call(:mpt_start) { |h| Native.mpt_start(h) }
      self
    end

    # Stops (pauses) the throttle: sets the kill flag, wakes every waiter in
    # every process, ends the monitor thread and returns the Summary
    # (runtime, total, mean_seconds_between, mean_per_second). A later
    # #start resumes. MpThrottle::WrongState if it is not running.
    def stop
      out = Native::Summary.new
      call(:mpt_stop) { |h| Native.mpt_stop(h, out) }
      Args.summary_of(out)
    end

    # The figures #stop reports, as of now, running or not.
    def summary
      out = Native::Summary.new
      call(:mpt_get_summary) { |h| Native.mpt_get_summary(h, out) }
      Args.summary_of(out)
    end

    # Blocks until a unit of fuel is granted (true), the timeout passes
    # (false) or the kill flag is set (nil: #stop or #kill was called;
    # nothing was taken, the worker should finish). `timeout` in seconds;
    # nil waits for as long as it takes. Before #start it waits for the
    # start. Other Ruby threads run meanwhile.
    #
    # `n:` takes n units at once (bandwidth-style; library 0.2.0 or later).
    #
    # Interrupts (Thread#raise, Thread#kill, Timeout, Ctrl-C, exit) end a
    # wait at once, having taken nothing, with library 0.2.0 or later
    # (MpThrottle.interruptible_waits?): the wait then sleeps in a helper
    # thread on a cancellation token that an interrupt fires. With an
    # older library they take effect only when the wait returns: give a
    # timeout, as in the tutorial's loop, where a worker must stay
    # responsive:
    #
    #   until throttle.kill_flag?
    #     work if throttle.await_fuel(1.0)
    #   end
    def await_fuel(timeout = nil, n: 1)
      status = wait_for_fuel(timeout, n, nil)
      status == Status::OK ? true : Args.not_taken(status)
    end

    # As #await_fuel, but returns the grant time (Integer CLOCK_MONOTONIC
    # nanoseconds, see MpThrottle.clock_now) instead of true: the instant
    # the library decided this waiter may go.
    def await_fuel_ns(timeout = nil, n: 1)
      grant = FFI::MemoryPointer.new(:int64)
      status = wait_for_fuel(timeout, n, grant)
      status == Status::OK ? grant.read(:int64) : Args.not_taken(status)
    end

    # Takes a unit of fuel if the tank holds one now (true); false if it is
    # empty, the throttle is not running, or the kill flag is set. Never
    # blocks. `n` units at once needs library 0.2.0 or later.
    def has_fuel?(n = 1)
      take_fuel(n, nil) == Status::OK
    end

    # As #has_fuel?, but returns the grant time (nanoseconds) or nil.
    def has_fuel_ns(n = 1)
      grant = FFI::MemoryPointer.new(:int64)
      take_fuel(n, grant) == Status::OK ? grant.read(:int64) : nil
    end

    # Counts one emission, for throttles made with auto_emit: false: now,
    # or at `timestamp`, an Integer of CLOCK_MONOTONIC nanoseconds
    # (MpThrottle.clock_now, Process.clock_gettime(Process::CLOCK_MONOTONIC,
    # :nanosecond)). True if counted; false if the throttle is not running
    # or its kill flag is set (nothing counted). MpThrottle::WrongState
    # with auto_emit on.
    def emit(timestamp = nil)
      no = [Status::NOT_RUNNING, Status::KILLED]
      status =
        if timestamp.nil?
          call(:mpt_emit, ok: no) { |h| Native.mpt_emit(h) }
        else
          unless timestamp.is_a?(Integer)
            raise TypeError, "timestamp must be Integer nanoseconds of CLOCK_MONOTONIC, " \
                             "not #{timestamp.class}"
          end
          ts = Args.int64(timestamp, "timestamp")
          call(:mpt_emit_at, ok: no) { |h| Native.mpt_emit_at(h, ts) }
        end
      status == Status::OK
    end

    # Statistics, each a pair [seconds between emissions, emissions per
    # second] as in mp_throttle; MpThrottle::MonitorOff without a monitor.
    # The last second (sliding).
    def latest
      stat_pair(:mpt_latest)
    end

    # Over the whole running time.
    def mean
      stat_pair(:mpt_mean)
    end

    # The shortest interval seen, and its rate ([0.0, 0.0] until one is).
    def lo_hi
      stat_pair(:mpt_lo_hi)
    end

    # The longest interval seen, and its rate ([0.0, 0.0] until one is).
    def hi_lo
      stat_pair(:mpt_hi_lo)
    end

    # Sets the kill flag (mp_throttle's kill_flag.set()): every waiter in
    # every process returns at once, until the next #start. Returns self.
    def kill
      call(:mpt_kill) { |h| Native.mpt_kill(h) }
      self
    end

    # Whether the kill flag is set (mp_throttle's kill_flag.is_set()).
    def kill_flag?
      flag(:mpt_kill_flag_is_set)
    end

    # Whether the throttle is running (started and not stopped).
    def running?
      flag(:mpt_is_running)
    end

    # Without taking anything: [units in the tank now, seconds until `n`
    # units would be granted to a waiter arriving now]. Library 0.2.0+.
    def peek_fuel(n = 1)
      Args.require_function(:mpt_peek_fuel)
      n = Args.count(n, "n")
      level = FFI::MemoryPointer.new(:uint64)
      wait = FFI::MemoryPointer.new(:double)
      call(:mpt_peek_fuel) { |h| Native.mpt_peek_fuel(h, n, level, wait) }
      [level.read(:uint64), wait.read(:double)]
    end

    # The rate in force, [max_n, per]: the one the throttle was made with,
    # or the last #set_rate of any process. Library 0.2.0+.
    def rate
      Args.require_function(:mpt_get_rate)
      max_n = FFI::MemoryPointer.new(:uint64)
      per = FFI::MemoryPointer.new(:double)
      call(:mpt_get_rate) { |h| Native.mpt_get_rate(h, max_n, per) }
      [max_n.read(:uint64), per.read(:double)]
    end

    # Changes the rate for every process that shares the throttle, from
    # now on. Library 0.2.0+. Returns self.
    def set_rate(max_n, per)
      Args.require_function(:mpt_set_rate)
      max_n = Args.count(max_n, "max_n")
      per = Args.seconds(per, "per")
      call(:mpt_set_rate) { |h| Native.mpt_set_rate(h, max_n, per) }
      self
    end

    # Releases this process's handle (mpt_throttle_free). Idempotent; later
    # calls raise MpThrottle::ClosedError. Does not stop the throttle: stop
    # it first to keep the statistics of the run. If the handle is not
    # closed, the garbage collector releases it (or the process's exit).
    def close
      free_now = @lock.synchronize do
        return nil if @closed

        @closed = true
        # In a forked child, calls in flight belong to the parent's threads,
        # which the child does not have.
        @in_flight = 0 if @pid != Process.pid
        @in_flight.zero?
      end
      release if free_now
      nil
    end

    def closed?
      @closed
    end

    def inspect
      state = @closed ? "closed" : "open"
      label = @name ? " #{@name.inspect}" : ""
      label += " at #{Args.shown_url(url)}" if url
      "#<#{self.class}#{label} #{state}>"
    end

    # --- internals -------------------------------------------------------

    # mpt_throttle_free, for FFI::AutoPointer: the garbage collector's (or
    # exit's) release of a handle nobody closed. Holds no reference to the
    # Throttle, which could then never be collected.
    RELEASE = Native.method(:mpt_throttle_free)
    private_constant :RELEASE

    def self.from_handle(pointer, name, connect = nil)
      throttle = allocate
      throttle.send(:adopt, pointer, name, connect)
      return throttle unless block_given?

      begin
        yield throttle
      ensure
        throttle.close
      end
    end
    private_class_method :from_handle

    private

    # `connect`: Throttle.connect's arguments, for a Redis throttle.
    def adopt(pointer, name, connect = nil)
      @handle = FFI::AutoPointer.new(pointer, RELEASE)
      @name = name&.dup&.freeze
      @connect = connect
      @lock = Mutex.new
      @closed = false
      @in_flight = 0
      @pid = Process.pid
    end

    # A Redis throttle's handle in a forked child: its connection is the
    # parent's, which the library refuses to use here (WrongState). Connects
    # again, with @lock held, the first time the child makes a call. The
    # calls in flight were the parent's threads'.
    def reconnect_here
      @in_flight = 0
      # The parent's handle first: freeing it in the child closes the
      # child's copies of its sockets and joins no thread (the library
      # checks). And before the new handle exists: that release lets go of
      # the parent's event thread by its thread id, which the new handle's
      # event thread may reuse in this process. If the connect fails, the
      # next call tries again.
      if @handle
        @handle.autorelease = false
        Native.mpt_throttle_free(@handle)
        @handle = nil
      end
      @handle = FFI::AutoPointer.new(Throttle.send(:connect_handle, @connect), RELEASE)
      @pid = Process.pid
    end

    # A copy would share the handle and free it twice.
    def initialize_copy(_other)
      raise TypeError, "#{self.class} cannot be copied (share the object itself)"
    end

    # Runs one library call on the handle, and raises for a status that is
    # neither OK nor one of `ok`. The handle stays valid during the call
    # even if another thread closes the Throttle meanwhile (the last call
    # out releases it). Asynchronous interrupts (Thread#raise, #kill) are
    # deferred to the end, so the count of calls in flight stays exact.
    def call(function, ok: [])
      Thread.handle_interrupt(Object => :never) do
        handle = @lock.synchronize do
          raise ClosedError if @closed

          reconnect_here if @connect && @pid != Process.pid
          @in_flight += 1
          @handle
        end
        begin
          status = yield handle
          raise MpThrottle.error_for(status, function) unless status.zero? || ok.include?(status)

          status
        ensure
          release if @lock.synchronize { (@in_flight -= 1).zero? && @closed }
        end
      end
    end

    def release
      return if @handle.nil? # a forked child's Redis throttle whose connect failed

      @handle.autorelease = false
      status = Native.mpt_throttle_free(@handle)
      MpThrottle.check(status, :mpt_throttle_free)
    end

    def wait_for_fuel(timeout, n, grant)
      timeout = timeout.nil? ? FOREVER : Args.seconds(timeout, "timeout", zero: true)
      n = Args.count(n, "n")
      ok = [Status::TIMEOUT, Status::KILLED]
      if timeout.zero?
        # A wait of 0 s is the has_fuel check (the same in the library, NO_FUEL
        # where the wait says TIMEOUT). Asked as such: a Redis throttle's wait
        # of 0 s sees its reply arrive after its deadline, which the library
        # of this release retries instead of giving up.
        status = take_fuel(n, grant)
        status == Status::NO_FUEL ? Status::TIMEOUT : status
      elsif MpThrottle.interruptible_waits?
        call(:mpt_await_fuel_cancellable, ok: ok) do |h|
          interruptible_wait(h, n, timeout, grant, ok)
        end
      elsif n == 1
        call(:mpt_await_fuel, ok: ok) { |h| Native.mpt_await_fuel(h, timeout, grant) }
      else
        Args.require_function(:mpt_await_fuel_n)
        call(:mpt_await_fuel_n, ok: ok) { |h| Native.mpt_await_fuel_n(h, n, timeout, grant) }
      end
    end

    # A wait that an interrupt of the calling thread ends at once. Runs
    # inside #call, so with asynchronous interrupts deferred; only the join
    # of the helper thread takes them. Raises the helper's failures itself,
    # with the message of the helper's thread.
    def interruptible_wait(handle, n, timeout, grant, ok)
      # Fuel there now, or the kill flag set: no thread needed. (Its
      # message, if any, is this thread's, as #call expects.)
      status = n == 1 ? Native.mpt_has_fuel(handle, grant) : Native.mpt_has_fuel_n(handle, n, grant)
      return status unless status == Status::NO_FUEL

      Interruptible.wait(:mpt_await_fuel_cancellable, ok) do |token|
        Native.mpt_await_fuel_cancellable(handle, n, timeout, token, grant)
      end
    end

    def take_fuel(n, grant)
      n = Args.count(n, "n")
      ok = [Status::NO_FUEL, Status::KILLED]
      if n == 1
        call(:mpt_has_fuel, ok: ok) { |h| Native.mpt_has_fuel(h, grant) }
      else
        Args.require_function(:mpt_has_fuel_n)
        call(:mpt_has_fuel_n, ok: ok) { |h| Native.mpt_has_fuel_n(h, n, grant) }
      end
    end

    def flag(function)
      out = FFI::MemoryPointer.new(:uint8)
      call(function) { |h| Native.public_send(function, h, out) }
      out.read(:uint8) != 0
    end

    def stat_pair(function)
      out = Native::Rate.new
      call(function) { |h| Native.public_send(function, h, out) }
      [out[:seconds_between], out[:per_second]]
    end
  end

  # What KeyedThrottle#key_stats returns: whether the key is in the table
  # (false: never used, forgotten, or dropped once idle; the other fields
  # are then 0), the units granted to it since it was added, and when that
  # was (Integer CLOCK_MONOTONIC nanoseconds, see MpThrottle.clock_now).
  KeyStats = Struct.new(:in_table, :granted, :since_ns)

  # What KeyedThrottle#stats returns: the keys in the table now, the most it
  # holds, the idle keys dropped to make room for new ones (ever), the keys
  # added (ever: a key dropped and used again counts twice), and the Summary
  # of the whole keyed throttle (what #stop would return, now).
  KeyedStats = Struct.new(:live_keys, :capacity, :evictions, :added, :summary)

  # Many throttles in one: at most max_n units of fuel per `per` seconds for
  # each key (a host, a user, an API token), shared by every thread of this
  # process, every child forked after it was made and, for a named one,
  # every process that opens the name. One configuration, and a table of up
  # to `capacity` keys made at once; each key has a schedule of its own,
  # with every guarantee of its hardcap: a key at its limit never slows
  # another, and waiters on one key are served first come, first served.
  # Library 0.2.0 or later (the C mpt_keyed_* functions).
  #
  # Keys are Strings of 0 to KEY_MAX (128) bytes, NUL bytes included (see
  # Args.key_arg: text is used as its UTF-8, so "é" and "\xC3\xA9".b are
  # one key); a longer one raises MpThrottle::InvalidArgument. A key never
  # seen has a full tank: its first request goes at once. A key is added to
  # the table by its first #await_fuel or #has_fuel?, and dropped only when
  # it has become exactly like a key never seen (its tank full again) and
  # the room is needed for a new key, or by #forget. A new key for which
  # there is no room (every key in the table still holds back fuel) raises
  # MpThrottle::NoRoom, having taken nothing.
  #
  # KeyedThrottle.connect makes (or joins) one in a Redis server instead,
  # whose keys processes on many hosts share.
  #
  # Its configuration: #max_n, #per, #hardcap and #capacity, read from the
  # library (mpt_keyed_get_config: for one opened by name or joined in
  # Redis, its creator's); #created? says whether this handle made it.
  #
  # Thread-safe as Throttle is: any method from any thread, #close included.
  class KeyedThrottle
    # KeyedThrottle.new(max_n, per, capacity, **options): an anonymous keyed
    # throttle, shared with the children forked after it.
    #
    # - max_n: 1 to KEYED_MAX_N units per key (KEYED_MAX_WINDOW with
    #   hardcap: :window); per: seconds; capacity: 1 to KEYED_MAX_CAPACITY
    #   keys (192 bytes of shared memory for each of about 1.25 * capacity
    #   slots rounded up to a power of two, reserved at once).
    # - hardcap: :limit (default), :one, :none or :window, per key.
    # - as_monitor: true (default: the statistics of the whole keyed
    #   throttle, #latest and #mean; each grant counts one emission) or
    #   false.
    # - rf_rate, timer_slack_ns, spin_s: as for Throttle.new.
    #
    # There is no as_throttle (a keyed throttle always rations) and no
    # auto_emit. Raises MpThrottle::InvalidArgument for numbers out of
    # range.
    def initialize(max_n, per, capacity, hardcap: :limit, as_monitor: true, rf_rate: nil,
                   timer_slack_ns: nil, spin_s: nil)
      Args.require_function(:mpt_keyed_new)
      options = Args.build_options(hardcap: hardcap, as_monitor: as_monitor, rf_rate: rf_rate,
                                   timer_slack_ns: timer_slack_ns, spin_s: spin_s)
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(
        Native.mpt_keyed_new(Args.count(max_n, "max_n"), Args.seconds(per, "per"),
                             Args.count(capacity, "capacity"), options, out),
        :mpt_keyed_new
      )
      adopt(out.read_pointer, nil, given: [max_n, per.to_f, Args.hardcap_name(hardcap), capacity])
    end

    # The named keyed throttle `name` (1 to 200 bytes, no '/'), which any
    # process of this user can open by name: creates it, or opens it if it
    # exists with the same configuration, capacity included
    # (MpThrottle::Mismatch otherwise, and for a plain Throttle of that
    # name). The options are those of KeyedThrottle.new, and group_shared
    # as for Throttle.create_named; #created? says whether it created the
    # name. Closing it does not remove the name (as for a Throttle):
    # KeyedThrottle.unlink does. With a block: yields the keyed throttle,
    # closes it afterwards and returns the block's value.
    def self.create_named(name, max_n, per, capacity, hardcap: :limit, as_monitor: true,
                          rf_rate: nil, timer_slack_ns: nil, spin_s: nil, group_shared: false,
                          &block)
      Args.require_function(:mpt_keyed_create_named)
      options = Args.build_options(hardcap: hardcap, as_monitor: as_monitor, rf_rate: rf_rate,
                                   timer_slack_ns: timer_slack_ns, spin_s: spin_s,
                                   group_shared: group_shared)
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(
        Native.mpt_keyed_create_named(Args.name_arg(name), Args.count(max_n, "max_n"),
                                      Args.seconds(per, "per"), Args.count(capacity, "capacity"),
                                      options, out),
        :mpt_keyed_create_named
      )
      from_handle(out.read_pointer, name,
                  given: [max_n, per.to_f, Args.hardcap_name(hardcap), capacity], &block)
    end

    # Opens the named keyed throttle `name`, adopting its configuration
    # (#max_n, #per, #hardcap, #capacity: its creator's; nil but #capacity
    # with a library from before mpt_keyed_get_config); the options as for
    # Throttle.open. MpThrottle::NotFound if there is no such name,
    # MpThrottle::Mismatch if it is a plain throttle. With a block: as
    # create_named.
    def self.open(name, timer_slack_ns: nil, spin_s: nil, group_shared: false, &block)
      Args.require_function(:mpt_keyed_open)
      options = Args.build_options(timer_slack_ns: timer_slack_ns, spin_s: spin_s,
                                   group_shared: group_shared)
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(Native.mpt_keyed_open(Args.name_arg(name), options, out), :mpt_keyed_open)
      from_handle(out.read_pointer, name, &block)
    end

    # Removes a name (mpt_throttle_unlink; the names of keyed and plain
    # throttles are one namespace). Processes that have it open go on using
    # it. MpThrottle::NotFound if there is no such name.
    def self.unlink(name)
      Throttle.unlink(name)
    end

    # The keyed throttle `name` in the Redis server at `url`, as
    # Throttle.connect makes a plain one (mpt_keyed_connect): makes it, or
    # joins it if it exists there with the same configuration
    # (MpThrottle::Mismatch otherwise, and for a plain throttle of that
    # name: plain and keyed throttles share the server's names). Processes
    # on any number of hosts, each with its own KeyedThrottle, share each
    # key's schedule, decided by the server on its own clock; every method
    # works as on any other keyed throttle. Library 0.2.0 or later.
    #
    # - url, name: as for Throttle.connect.
    # - max_n (at most KEYED_MAX_N; KEYED_MAX_WINDOW with hardcap:
    #   :window), per (a whole number of microseconds) and the options: as
    #   for KeyedThrottle.new. All but timer_slack_ns and spin_s are the
    #   configuration. There is no group_shared (ArgumentError) and no
    #   capacity: each key is a Redis key that expires once the key is idle
    #   again, so #capacity and stats.capacity are 0 (no bound),
    #   MpThrottle::NoRoom is never raised, and stats.evictions counts the
    #   keys that went idle.
    #
    # Raises as Throttle.connect does (MpThrottle::Unreachable,
    # PermissionDenied, Mismatch, InvalidArgument, Unsupported). With a
    # block: as create_named. As with Throttle.connect, closing it leaves
    # the keyed throttle on the server for the other hosts
    # (KeyedThrottle.unlink_url removes it), and a forked child connects
    # again, the first time it uses the KeyedThrottle it inherited.
    def self.connect(url, name, max_n, per, hardcap: :limit, as_monitor: true, rf_rate: nil,
                     timer_slack_ns: nil, spin_s: nil, &block)
      Args.require_function(:mpt_keyed_connect)
      options = { hardcap: hardcap, as_monitor: as_monitor, rf_rate: rf_rate,
                  timer_slack_ns: timer_slack_ns, spin_s: spin_s }.freeze
      args = [Args.url_arg(url).dup.freeze, Args.name_arg(name).dup.freeze,
              Args.count(max_n, "max_n"), Args.seconds(per, "per"), options].freeze
      from_handle(connect_handle(args), name, connect: args,
                  given: [max_n, per.to_f, Args.hardcap_name(hardcap), 0], &block)
    end

    # Removes the keyed throttle `name` from the Redis server at `url`
    # (Throttle.unlink_url: mpt_throttle_unlink_url removes a plain or a
    # keyed throttle). The processes that use it, on every host, find it
    # killed (their waits return nil); a later KeyedThrottle.connect makes
    # a new one. MpThrottle::NotFound if the server has no such throttle.
    def self.unlink_url(url, name)
      Throttle.unlink_url(url, name)
    end

    # A new handle on the Redis keyed throttle of KeyedThrottle.connect's
    # arguments.
    def self.connect_handle(args)
      url, name, max_n, per, options = args
      out = FFI::MemoryPointer.new(:pointer)
      MpThrottle.check(
        Native.mpt_keyed_connect(url, name, max_n, per, Args.build_options(**options), out),
        :mpt_keyed_connect
      )
      out.read_pointer
    end
    private_class_method :connect_handle

    # The name of a named keyed throttle (or of one in Redis), nil for an
    # anonymous one.
    attr_reader :name

    # The configuration: units per key per `per` seconds (Integer, Float),
    # the hardcap (:limit, :one, :none or :window) and the most keys the
    # table holds (0 in Redis: no bound). Read from the library when the
    # keyed throttle is made or opened (mpt_keyed_get_config), so one
    # opened by name or joined in Redis reports its creator's; with a
    # library from before that function, #max_n, #per and #hardcap are
    # what was given (nil for one opened by name) and #capacity asks
    # #stats.
    attr_reader :max_n, :per, :hardcap

    # The Redis server's URL of a keyed throttle made by
    # KeyedThrottle.connect (as given), nil for one in shared memory.
    def url
      @connect&.first
    end

    # Whether this handle made the keyed throttle (KeyedThrottle.new; a
    # create_named or connect that made the name) rather than opened or
    # joined one that existed; nil with a library from before
    # mpt_keyed_get_config. Nothing is removed when it is closed, whichever
    # it is (a name goes with KeyedThrottle.unlink or unlink_url).
    def created?
      @created
    end

    # Starts (or resumes) the keyed throttle: clears the kill flag and, with
    # as_monitor, starts the monitor thread in this process. Keys keep their
    # schedules across a stop and a start. MpThrottle::WrongState if it is
    # running already. Returns self.
    def start
      call(:mpt_keyed_start) { |h| Native.mpt_keyed_start(h) }
      self
    end

    # Stops (pauses) the keyed throttle: sets the kill flag, wakes every
    # waiter on every key in every process and returns the Summary of the
    # whole keyed throttle (each grant is one emission).
    # MpThrottle::WrongState if it is not running.
    def stop
      out = Native::Summary.new
      call(:mpt_keyed_stop) { |h| Native.mpt_keyed_stop(h, out) }
      Args.summary_of(out)
    end

    # Sets the kill flag: every waiter on every key, in every process,
    # returns nil at once, and so does every later call that takes fuel,
    # until the next #start (after a #stop). Returns self.
    def kill
      call(:mpt_keyed_kill) { |h| Native.mpt_keyed_kill(h) }
      self
    end

    # Whether the keyed throttle is running (started and not stopped).
    def running?
      flag(:mpt_keyed_is_running)
    end

    # Whether the kill flag of the whole keyed throttle is set (by #kill or
    # #stop, through any handle, in any process), as Throttle#kill_flag?.
    # MpThrottle::Unsupported with a library from before
    # mpt_keyed_kill_flag_is_set.
    def kill_flag?
      Args.require_function(:mpt_keyed_kill_flag_is_set)
      flag(:mpt_keyed_kill_flag_is_set)
    end

    # Blocks until `n` units of the fuel of `key` are granted, all at once
    # (true), `timeout` seconds pass (false; nil: no limit) or the kill flag
    # is set (nil: #stop or #kill was called; nothing was taken). Before
    # #start it waits for the start. `n` is at most what a key's tank holds
    # (max_n; 1 with hardcap: :one). MpThrottle::NoRoom for a new key the
    # table has no room for. Interrupts (Thread#raise, Thread#kill,
    # Timeout, Ctrl-C) end the wait at once, having taken nothing, as
    # Throttle#await_fuel's.
    def await_fuel(key, n: 1, timeout: nil)
      status = wait_for_fuel(key, n, timeout, nil)
      status == Status::OK ? true : Args.not_taken(status)
    end

    # As #await_fuel, but returns the grant time (Integer CLOCK_MONOTONIC
    # nanoseconds) instead of true.
    def await_fuel_ns(key, n: 1, timeout: nil)
      grant = FFI::MemoryPointer.new(:int64)
      status = wait_for_fuel(key, n, timeout, grant)
      status == Status::OK ? grant.read(:int64) : Args.not_taken(status)
    end

    # Takes `n` units of the fuel of `key` if its tank holds them now
    # (true); false if it does not, the keyed throttle is not running, or
    # the kill flag is set. Never blocks. MpThrottle::NoRoom for a new key
    # the table has no room for.
    def has_fuel?(key, n: 1)
      take_fuel(Args.key_arg(key), Args.count(n, "n"), nil) == Status::OK
    end

    # As #has_fuel?, but returns the grant time (nanoseconds) or nil.
    def has_fuel_ns(key, n: 1)
      grant = FFI::MemoryPointer.new(:int64)
      status = take_fuel(Args.key_arg(key), Args.count(n, "n"), grant)
      status == Status::OK ? grant.read(:int64) : nil
    end

    # Without taking anything, and without adding the key: [units in the
    # tank of `key` now, seconds until `n` units would be granted to a
    # waiter arriving now, after those queued on the key]. A key not in the
    # table has a full tank. MpThrottle::Error with status KILLED while the
    # kill flag is set, MpThrottle::NotRunning before #start.
    def peek_fuel(key, n: 1)
      pointer, length = Args.key_arg(key)
      n = Args.count(n, "n")
      level = FFI::MemoryPointer.new(:uint64)
      wait = FFI::MemoryPointer.new(:double)
      call(:mpt_keyed_peek) { |h| Native.mpt_keyed_peek(h, pointer, length, n, level, wait) }
      [level.read(:uint64), wait.read(:double)]
    end

    # Drops `key` from the table, whatever its state: its next use starts
    # afresh, as a key never seen (which may let through what its schedule
    # still held back). Waiters asleep on it keep their grant times. True
    # if the key was in the table.
    def forget(key)
      pointer, length = Args.key_arg(key)
      found = FFI::MemoryPointer.new(:uint8)
      call(:mpt_keyed_forget) { |h| Native.mpt_keyed_forget(h, pointer, length, found) }
      found.read(:uint8) != 0
    end

    # The figures of `key`: a KeyStats (in_table, granted, since_ns).
    def key_stats(key)
      pointer, length = Args.key_arg(key)
      out = Native::KeyStats.new
      call(:mpt_keyed_key_stats) { |h| Native.mpt_keyed_key_stats(h, pointer, length, out) }
      KeyStats.new(out[:in_table] != 0, out[:granted], out[:since_ns])
    end

    # The figures of the whole keyed throttle: a KeyedStats (live_keys,
    # capacity, evictions, added, summary).
    def stats
      out = Native::KeyedStats.new
      call(:mpt_keyed_get_stats) { |h| Native.mpt_keyed_get_stats(h, out) }
      KeyedStats.new(out[:live_keys], out[:capacity], out[:evictions], out[:added],
                     Args.summary_of(out[:summary]))
    end

    # The most keys the table holds (as made; 0 in Redis: no bound).
    def capacity
      @capacity.nil? ? stats.capacity : @capacity
    end

    # Statistics over every key, each a pair [seconds between emissions,
    # emissions per second]; MpThrottle::MonitorOff without a monitor. The
    # last second (sliding).
    def latest
      stat_pair(:mpt_keyed_latest)
    end

    # Over the whole running time.
    def mean
      stat_pair(:mpt_keyed_mean)
    end

    # Releases this process's handle (mpt_keyed_free). Idempotent; later
    # calls raise MpThrottle::ClosedError. Neither stops the keyed throttle
    # nor removes its name. If it is not closed, the garbage collector
    # releases the handle (or the process's exit).
    def close
      free_now = @lock.synchronize do
        return nil if @closed

        @closed = true
        @in_flight = 0 if @pid != Process.pid # calls in flight were the parent's
        @in_flight.zero?
      end
      release if free_now
      nil
    end

    def closed?
      @closed
    end

    def inspect
      label = @name ? " #{@name.inspect}" : ""
      label += " at #{Args.shown_url(url)}" if url
      "#<#{self.class}#{label} #{@closed ? 'closed' : 'open'}>"
    end

    # --- internals -------------------------------------------------------

    # mpt_keyed_free, for FFI::AutoPointer (see Throttle::RELEASE); nil with
    # a library that lacks keyed throttles (nothing is ever made then).
    RELEASE = Native.respond_to?(:mpt_keyed_free) ? Native.method(:mpt_keyed_free) : nil
    private_constant :RELEASE

    def self.from_handle(pointer, name, connect: nil, given: nil)
      keyed = allocate
      keyed.send(:adopt, pointer, name, connect: connect, given: given)
      return keyed unless block_given?

      begin
        yield keyed
      ensure
        keyed.close
      end
    end
    private_class_method :from_handle

    private

    # `connect`: KeyedThrottle.connect's arguments, for one in Redis;
    # `given`: [max_n, per, hardcap, capacity] as made, what a library
    # without mpt_keyed_get_config leaves them.
    def adopt(pointer, name, connect: nil, given: nil)
      @handle = FFI::AutoPointer.new(pointer, RELEASE)
      @name = name&.dup&.freeze
      @connect = connect
      @lock = Mutex.new
      @closed = false
      @in_flight = 0
      @pid = Process.pid
      @max_n, @per, @hardcap, @capacity = given # (all nil for one opened by name)
      @created = nil
      read_config(@handle)
    end

    # What mpt_keyed_get_config says of `handle`: the configuration and
    # whether the handle made the keyed throttle. Nothing with a library
    # without it.
    def read_config(handle)
      return if Native::MISSING.include?(:mpt_keyed_get_config)

      options = Native::Options.new # (version 0: the 40 bytes of version 1)
      max_n = FFI::MemoryPointer.new(:uint64)
      per = FFI::MemoryPointer.new(:double)
      capacity = FFI::MemoryPointer.new(:uint64)
      created = FFI::MemoryPointer.new(:uint8)
      MpThrottle.check(Native.mpt_keyed_get_config(handle, options, max_n, per, capacity, created),
                       :mpt_keyed_get_config)
      @max_n = max_n.read(:uint64)
      @per = per.read(:double)
      @hardcap = HARDCAPS.key(options[:hardcap])
      @capacity = capacity.read(:uint64)
      @created = created.read(:uint8) != 0
    end

    # A Redis keyed throttle's handle in a forked child, as
    # Throttle#reconnect_here: the parent's handle released first, then a
    # connection of this process's own (with @lock held, the first time the
    # child makes a call; if it fails, the next call tries again).
    def reconnect_here
      @in_flight = 0
      if @handle
        @handle.autorelease = false
        Native.mpt_keyed_free(@handle)
        @handle = nil
      end
      @handle = FFI::AutoPointer.new(KeyedThrottle.send(:connect_handle, @connect), RELEASE)
      @pid = Process.pid
      read_config(@handle)
    end

    # A copy would share the handle and free it twice.
    def initialize_copy(_other)
      raise TypeError, "#{self.class} cannot be copied (share the object itself)"
    end

    # One library call on the handle, as Throttle#call: raises for a status
    # that is neither OK nor one of `ok`; the handle stays valid during the
    # call even if another thread closes the keyed throttle meanwhile.
    def call(function, ok: [])
      Thread.handle_interrupt(Object => :never) do
        handle = @lock.synchronize do
          raise ClosedError if @closed

          reconnect_here if @connect && @pid != Process.pid
          @in_flight += 1
          @handle
        end
        begin
          status = yield handle
          raise MpThrottle.error_for(status, function) unless status.zero? || ok.include?(status)

          status
        ensure
          release if @lock.synchronize { (@in_flight -= 1).zero? && @closed }
        end
      end
    end

    def release
      return if @handle.nil? # a forked child's Redis keyed throttle whose connect failed

      @handle.autorelease = false
      MpThrottle.check(Native.mpt_keyed_free(@handle), :mpt_keyed_free)
    end

    def flag(function)
      out = FFI::MemoryPointer.new(:uint8)
      call(function) { |h| Native.public_send(function, h, out) }
      out.read(:uint8) != 0
    end

    def wait_for_fuel(key, n, timeout, grant)
      pointer, length = Args.key_arg(key)
      n = Args.count(n, "n")
      timeout = timeout.nil? ? FOREVER : Args.seconds(timeout, "timeout", zero: true)
      if timeout.zero?
        # A wait of 0 s is the has_fuel check (NO_FUEL where the wait says
        # TIMEOUT), as Throttle#await_fuel makes it.
        status = take_fuel([pointer, length], n, grant)
        return status == Status::NO_FUEL ? Status::TIMEOUT : status
      end
      ok = [Status::TIMEOUT, Status::KILLED]
      call(:mpt_keyed_await_fuel_cancellable, ok: ok) do |h|
        # Fuel there now, the kill flag set or no room: no thread needed.
        status = Native.mpt_keyed_has_fuel(h, pointer, length, n, grant)
        next status unless status == Status::NO_FUEL

        Interruptible.wait(:mpt_keyed_await_fuel_cancellable, ok) do |token|
          Native.mpt_keyed_await_fuel_cancellable(h, pointer, length, n, timeout, token, grant)
        end
      end
    end

    def take_fuel(key, n, grant)
      pointer, length = key
      call(:mpt_keyed_has_fuel, ok: [Status::NO_FUEL, Status::KILLED]) do |h|
        Native.mpt_keyed_has_fuel(h, pointer, length, n, grant)
      end
    end

    def stat_pair(function)
      out = Native::Rate.new
      call(function) { |h| Native.public_send(function, h, out) }
      [out[:seconds_between], out[:per_second]]
    end
  end
end
