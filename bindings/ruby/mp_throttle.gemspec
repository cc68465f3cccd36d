# frozen_string_literal: true

# The mp_throttle gem: the Ruby binding alone (lib/mp_throttle.rb), which
# loads the C library libmp_throttle at run time (`make lib`, `make install`
# at the top of the repository). Build it here:
#
#   gem build mp_throttle.gemspec      # -> mp_throttle-<version>.gem
#   gem install --local mp_throttle-<version>.gem
#
# The version is the library's: MPT_VERSION_STRING of include/mp_throttle.h
# (equal to Cargo.toml's version; test/test_gem.rb checks both).

header = File.expand_path("../../include/mp_throttle.h", __dir__)
version = File.read(header)[/^#define MPT_VERSION_STRING "([^"]+)"$/, 1]
raise "mp_throttle.gemspec: no MPT_VERSION_STRING in #{header}" unless version

Gem::Specification.new do |spec|
  spec.name = "mp_throttle"
  spec.version = version
  spec.summary = "Throttle and monitor many workers (threads, forked children, " \
                 "unrelated processes) through one shared rate"
  spec.description = "Ruby binding (ffi) of libmp_throttle: forked children, threads and " \
                     "unrelated processes in any language share one rate, together starting " \
                     "at most max_n pieces of work per `per` seconds. Needs the C library " \
                     "libmp_throttle.so.0, found through pkg-config, the system's library " \
                     "path or $MPT_LIB_DIR."
  spec.authors = ["mp_throttle maintainers"]
  spec.licenses = ["MIT", "Apache-2.0"] # MIT OR Apache-2.0, as the library
  spec.required_ruby_version = ">= 2.7"
  spec.files = Dir.glob("lib/**/*", base: __dir__).select { |f| File.file?(File.join(__dir__, f)) }.sort +
               %w[README.md example.rb]
  spec.require_paths = ["lib"]
  spec.add_runtime_dependency "ffi", "~> 1.15" # tested with 1.15.5
end
