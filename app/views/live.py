import streamlit as st

st.title("Live")
st.info("Coming soon.")
